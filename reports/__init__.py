"""Report bundles: run record -> results.json, report.html, junit.xml, raw/, manifest.json; then
Ed25519/DSSE signatures, a key registry, verification and a hash-chained audit log.

Why a separate package: a bundle must be verifiable years later by people who never ran the rig,
so everything needed to check it (canonical JSON, hashing, signature rules) lives here with no
dependency on the bench or the procedure engine.
"""

BUNDLE_SCHEMA_VERSION = 1
