"""The link to one NI DAQ device: where its tasks are created and how their failures read.

Why one code path for local and remote devices: with ``grpc_server = "host:port"`` every task is
created with ``nidaqmx.Task(grpc_options=nidaqmx.GrpcSessionOptions(...))`` (NI's public API for a
remote NI gRPC Device Server, which is also how the simulated bench is reached); without it the
same calls go to the local NI-DAQmx driver. Nothing else differs, so the outputs
(instruments.daq_outputs) and the acquisition (instruments.daq_acquisition) ask this object for
tasks and wrap every call in ``op()`` and never look at the transport.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
import nidaqmx
import nidaqmx.errors

from instruments.daq_channels import DaqConfigError
from instruments.errors import InstrumentDisconnected, InstrumentReportedError
from instruments.grpc_link import InsecureLinkError, open_channel
from instruments.visa_instrument import Identity

# One logger for every part of the DAQ driver: the log names the driver, whichever part wrote it.
log = logging.getLogger("instruments.daq")

AI_RANGE_V = 10.0  # every analog input is read in ±10 V


def no_driver_message(name: str) -> str:
    return (
        f"the NI-DAQmx driver is not installed on this machine and no NI gRPC device server is "
        f"configured; set grpc_server = \"host:port\" in [instruments.{name}] of the "
        f"station file to use a remote device, or use the simulated bench (mode = \"sim\", "
        f"grpc_server = \"sim\")."
    )


class DaqLink:
    """One device (``resource``, e.g. "Dev1"), on the local driver or an NI gRPC device server."""

    def __init__(
        self,
        name: str,
        device: str,
        *,
        timeout_ms: int,
        grpc_server: str | None,
        grpc_tls: Mapping[str, Any] | None,
    ) -> None:
        self.name = name
        self.device = device
        self.timeout_ms = timeout_ms
        self.grpc_server = grpc_server
        self._grpc_channel: grpc.Channel | None = None
        if grpc_server == "sim":
            raise InstrumentDisconnected(
                name, "open", "grpc_server = \"sim\" must be resolved to the simulated bench's address "
                "(the bench does this when it starts the sim); give \"host:port\" here",
            )
        if grpc_server:
            try:  # TLS from the station file; plaintext only to this host (instruments.grpc_link)
                self._grpc_channel = open_channel(grpc_server, grpc_tls)
            except InsecureLinkError as exc:
                raise DaqConfigError(f"instruments.{name}: {exc}") from None

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000

    @contextmanager
    def op(self, operation: str) -> Iterator[None]:
        """Map nidaqmx/gRPC failures to the driver's exceptions, naming the instrument and operation."""
        try:
            yield
        except nidaqmx.errors.DaqError as exc:
            summary = str(exc).strip().splitlines()[0] if str(exc).strip() else "no description"
            err = InstrumentReportedError(self.name, operation, f"DAQmx error {exc.error_code}: {summary}")
            err.daqmx_error_code = exc.error_code  # type: ignore[attr-defined]
            raise err from exc
        except (nidaqmx.errors.DaqNotFoundError, nidaqmx.errors.DaqNotSupportedError) as exc:
            raise InstrumentDisconnected(self.name, operation, no_driver_message(self.name)) from exc
        except nidaqmx.errors.RpcError as exc:
            raise InstrumentDisconnected(
                self.name, operation, f"NI gRPC device server {self.grpc_server}: {exc}"
            ) from exc

    def new_task(self) -> Any:
        """A task on the local driver or, with grpc_server, on that server (one code path)."""
        if self._grpc_channel is None:
            return nidaqmx.Task()
        return nidaqmx.Task(grpc_options=nidaqmx.GrpcSessionOptions(self._grpc_channel, ""))

    def physical(self, local: str) -> str:
        """The full channel name ("Dev1/ai0") of a line as the station file names it ("ai0")."""
        return local if "/" in local and not local.startswith("port") else f"{self.device}/{local}"

    def identify(self) -> Identity:
        """Product type and serial from the device, NI-DAQmx driver version from its host."""
        with self.op("identify"):
            if self._grpc_channel is None:
                device = nidaqmx.system.Device(self.device)
                version = nidaqmx.system.System.local().driver_version
            else:
                opts = nidaqmx.GrpcSessionOptions(self._grpc_channel, "")
                device = nidaqmx.system.Device(self.device, grpc_options=opts)
                version = nidaqmx.system.System.remote(opts).driver_version
            product, serial = device.product_type, device.serial_num
        return Identity(
            model=str(product),
            serial=f"{int(serial):08X}",
            firmware=f"NI-DAQmx {version.major_version}.{version.minor_version}.{version.update_version}",
        )

    def close(self) -> None:
        """Close the connection to the gRPC server (nothing to do for the local driver)."""
        if self._grpc_channel is not None:
            self._grpc_channel.close()
            self._grpc_channel = None


def close_quietly(task: Any) -> None:
    """Close a task whose server may be gone already; closing must not mask the real error."""
    if task is not None:
        try:
            task.close()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


__all__ = ["AI_RANGE_V", "DaqLink", "close_quietly", "log", "no_driver_message"]
