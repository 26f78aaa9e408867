"""The bench service (`rig serve`): one long-running process per station that owns the bench,
runs jobs one at a time, and serves the operator panel, a JSON API and a live event stream."""
