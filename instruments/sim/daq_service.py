"""gRPC servicer of the NI-DAQmx service (``nidaqmx_grpc.NiDAQmx``) over the virtual device.

Why it mirrors the NI gRPC Device Server's conventions exactly: the unmodified ``nidaqmx`` package
turns a call failure into ``DaqError`` only when the status carries the DAQmx code in the ``ni-error``
trailing metadata, and read functions report their status in the response (with the samples read
before the error), so both conventions are reproduced here.

Only the RPCs the driver and tests use are implemented (the rest answer UNIMPLEMENTED, which
``nidaqmx`` reports as "not supported by the NI gRPC Device Server being used").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from nidaqmx._stubs import nidaqmx_pb2 as pb
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
from nidaqmx.error_codes import DAQmxErrors
from nidaqmx.utils import flatten_channel_string, unflatten_channel_string
from session_pb2 import Session

from instruments.sim.daq_device import (
    DRIVER_VERSION,
    PRODUCT_TYPE,
    DaqmxFault,
    Task,
    VirtualDaq,
    error_string,
)

log = logging.getLogger(__name__)

GROUP_BY_CHANNEL = 0  # nidaqmx.constants.FillMode / data layout

# attribute ids (nidaqmx's generated code uses them as literals)
SYS_MAJOR, SYS_MINOR, SYS_UPDATE = 0x1272, 0x1923, 0x2F22
DEV_PRODUCT_TYPE, DEV_SERIAL_NUM = 0x0631, 0x0632
TASK_NAME, TASK_CHANNELS, TASK_NUM_CHANS, TASK_COMPLETE = 0x1276, 0x1273, 0x2181, 0x1274
READ_AVAIL_SAMP_PER_CHAN, READ_CHANNELS_TO_READ, READ_DEFAULT_NUM_SAMPS = 0x1223, 0x1823, 0x31E8
READ_DI_NUM_BOOLEANS_PER_CHAN, WRITE_DO_NUM_BOOLEANS_PER_CHAN = 0x217C, 0x217F
READ_NUM_CHANS, WRITE_NUM_CHANS = 0x217B, 0x217E
CHAN_TYPE, CHAN_AI_MEAS_TYPE = 0x187F, 0x0695
CHAN_TYPE_VALUES = {"ai": 10100, "ao": 10102, "do": 10153}  # nidaqmx.constants.ChannelType
AI_MEAS_VOLTAGE = 10322


def _rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run one RPC under the world lock; a DaqmxFault becomes a status with the ``ni-error`` code."""

    @functools.wraps(method)
    def wrapper(self: "DaqService", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            with self.device.world.lock:
                return method(self, request, context)
        except DaqmxFault as fault:
            context.set_trailing_metadata((("ni-error", str(fault.code)),))
            context.abort(grpc.StatusCode.UNKNOWN, fault.message)

    return wrapper


def _channel_major(flat: Any, n_channels: int, layout: int) -> np.ndarray:
    data = np.asarray(flat)
    if n_channels == 0:
        return data.reshape(0, -1)
    if layout == GROUP_BY_CHANNEL:
        return data.reshape(n_channels, -1)
    return data.reshape(-1, n_channels).T


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


_READ_ARRAY_TAG = _varint((pb.ReadAnalogF64Response.DESCRIPTOR.fields_by_name["read_array"].number << 3) | 2)


def _read_response(flat: np.ndarray, status: int, n: int) -> Any:
    """ReadAnalogF64Response with ``read_array`` = ``flat``, built from its wire form.

    Why: the field is a packed repeated double, on the wire exactly the samples as little-endian
    float64 bytes; building it from a Python list converted each sample on its own and cost about
    1 ms per 18 000 samples, most of a virtual-time read of 300 s at 20 Hz. Same message, same bytes."""
    head = pb.ReadAnalogF64Response(status=status, samps_per_chan_read=n).SerializeToString()
    if not flat.size:
        return pb.ReadAnalogF64Response.FromString(head)
    samples = np.ascontiguousarray(flat, dtype="<f8").tobytes()
    return pb.ReadAnalogF64Response.FromString(head + _READ_ARRAY_TAG + _varint(len(samples)) + samples)


class DaqService(pb_grpc.NiDAQmxServicer):
    """Translates NI-DAQmx RPCs into calls on one ``VirtualDaq``."""

    def __init__(self, device: VirtualDaq) -> None:
        self.device = device

    def _task(self, session: Session) -> Task:
        return self.device.task(session.name)

    # -- system and device --------------------------------------------------------------------------

    @_rpc
    def GetSystemInfoAttributeUInt32(self, request: Any, context: Any) -> Any:
        versions = {SYS_MAJOR: DRIVER_VERSION[0], SYS_MINOR: DRIVER_VERSION[1], SYS_UPDATE: DRIVER_VERSION[2]}
        if request.attribute_raw not in versions:
            raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")
        return pb.GetSystemInfoAttributeUInt32Response(value=versions[request.attribute_raw])

    def _check_device(self, name: str) -> None:
        if name.lower() != self.device.device_name.lower():
            raise DaqmxFault(DAQmxErrors.INVALID_DEVICE_ID, f"Device Specified: {name}")

    @_rpc
    def GetDeviceAttributeString(self, request: Any, context: Any) -> Any:
        self._check_device(request.device_name)
        if request.attribute_raw != DEV_PRODUCT_TYPE:
            raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")
        return pb.GetDeviceAttributeStringResponse(value=PRODUCT_TYPE)

    @_rpc
    def GetDeviceAttributeUInt32(self, request: Any, context: Any) -> Any:
        self._check_device(request.device_name)
        if request.attribute_raw != DEV_SERIAL_NUM:
            raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")
        return pb.GetDeviceAttributeUInt32Response(value=self.device.serial_number)

    def GetErrorString(self, request: Any, context: Any) -> Any:
        return pb.GetErrorStringResponse(error_string=error_string(request.error_code))

    # -- tasks --------------------------------------------------------------------------------------

    @_rpc
    def CreateTask(self, request: Any, context: Any) -> Any:
        task, new = self.device.create_task(request.session_name)
        return pb.CreateTaskResponse(task=Session(name=task.name), new_session_initialized=new)

    @_rpc
    def StartTask(self, request: Any, context: Any) -> Any:
        self.device.start(self._task(request.task))
        return pb.StartTaskResponse()

    @_rpc
    def StopTask(self, request: Any, context: Any) -> Any:
        self.device.stop(self._task(request.task))
        return pb.StopTaskResponse()

    @_rpc
    def ClearTask(self, request: Any, context: Any) -> Any:
        self.device.clear(self._task(request.task))
        return pb.ClearTaskResponse()

    @_rpc
    def TaskControl(self, request: Any, context: Any) -> Any:
        self._task(request.task)  # commit/reserve/verify are no-ops on the virtual device
        return pb.TaskControlResponse()

    @_rpc
    def GetTaskAttributeString(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        if request.attribute_raw == TASK_NAME:
            return pb.GetTaskAttributeStringResponse(value=task.name)
        if request.attribute_raw == TASK_CHANNELS:
            return pb.GetTaskAttributeStringResponse(value=flatten_channel_string([c.name for c in task.channels]))
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    @_rpc
    def GetTaskAttributeUInt32(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        if request.attribute_raw == TASK_NUM_CHANS:
            return pb.GetTaskAttributeUInt32Response(value=len(task.channels))
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    @_rpc
    def GetTaskAttributeBool(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        if request.attribute_raw == TASK_COMPLETE:
            return pb.GetTaskAttributeBoolResponse(value=not task.running)
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    @_rpc
    def GetReadAttributeUInt32(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        attribute = request.attribute_raw
        if attribute in (READ_AVAIL_SAMP_PER_CHAN, READ_DEFAULT_NUM_SAMPS):
            self.device.world.sync()
            acq = task.acquisition
            if acq is None:  # on-demand: one sample
                return pb.GetReadAttributeUInt32Response(value=1 if attribute == READ_DEFAULT_NUM_SAMPS else 0)
            return pb.GetReadAttributeUInt32Response(value=0 if acq.overflowed else acq.available)
        if attribute == READ_NUM_CHANS:
            return pb.GetReadAttributeUInt32Response(value=len(task.channels))
        if attribute == READ_DI_NUM_BOOLEANS_PER_CHAN:
            return pb.GetReadAttributeUInt32Response(value=1)  # one line per channel
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {attribute:#x}")

    @_rpc
    def GetWriteAttributeUInt32(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        if request.attribute_raw == WRITE_DO_NUM_BOOLEANS_PER_CHAN:
            return pb.GetWriteAttributeUInt32Response(value=1)  # one line per channel
        if request.attribute_raw == WRITE_NUM_CHANS:
            return pb.GetWriteAttributeUInt32Response(value=len(task.channels))
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    @_rpc
    def GetReadAttributeString(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        if request.attribute_raw == READ_CHANNELS_TO_READ:
            return pb.GetReadAttributeStringResponse(value=flatten_channel_string([c.name for c in task.channels]))
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    @_rpc
    def GetChanAttributeInt32(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        wanted = set(unflatten_channel_string(request.channel))
        chans = [c for c in task.channels if not wanted or c.name in wanted]
        if not chans:
            raise DaqmxFault(DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST, f"Channel Name: {request.channel}")
        if request.attribute_raw == CHAN_TYPE:
            return pb.GetChanAttributeInt32Response(value_raw=CHAN_TYPE_VALUES[chans[0].kind])
        if request.attribute_raw == CHAN_AI_MEAS_TYPE and chans[0].kind == "ai":
            return pb.GetChanAttributeInt32Response(value_raw=AI_MEAS_VOLTAGE)
        raise DaqmxFault(DAQmxErrors.ATTR_NOT_SUPPORTED, f"Property: {request.attribute_raw:#x}")

    # -- channels and timing ------------------------------------------------------------------------

    @_rpc
    def CreateAIVoltageChan(self, request: Any, context: Any) -> Any:
        self.device.add_channels(
            self._task(request.task), request.physical_channel, "ai",
            request.name_to_assign_to_channel, request.min_val, request.max_val,
        )
        return pb.CreateAIVoltageChanResponse()

    @_rpc
    def CreateAOVoltageChan(self, request: Any, context: Any) -> Any:
        self.device.add_channels(
            self._task(request.task), request.physical_channel, "ao",
            request.name_to_assign_to_channel, request.min_val, request.max_val,
        )
        return pb.CreateAOVoltageChanResponse()

    @_rpc
    def CreateDOChan(self, request: Any, context: Any) -> Any:
        self.device.add_channels(
            self._task(request.task), request.lines, "do", request.name_to_assign_to_lines, 0.0, 1.0
        )
        return pb.CreateDOChanResponse()

    @_rpc
    def CfgSampClkTiming(self, request: Any, context: Any) -> Any:
        self.device.configure_timing(
            self._task(request.task), request.rate, request.sample_mode_raw, request.samps_per_chan
        )
        return pb.CfgSampClkTimingResponse()

    @_rpc
    def CfgInputBuffer(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        task.buffer_samples = int(request.num_samps_per_chan)
        return pb.CfgInputBufferResponse()

    # -- reading ------------------------------------------------------------------------------------

    def ReadAnalogF64(self, request: Any, context: Any) -> Any:
        # Not under _rpc's lock for the whole call: read_analog waits on the world's condition,
        # which releases the lock while it waits.
        try:
            with self.device.world.lock:
                task = self._task(request.task)
                data, status = self.device.read_analog(task, request.num_samps_per_chan, request.timeout)
        except DaqmxFault as fault:
            return pb.ReadAnalogF64Response(status=fault.code, samps_per_chan_read=0)
        n = data.shape[1]
        # Partial reads are packed: channel c's samples start at c·n (what DAQmx does too).
        flat = data.ravel() if request.fill_mode_raw == GROUP_BY_CHANNEL else data.T.ravel()
        return _read_response(flat, status, n)

    def ReadDigitalLines(self, request: Any, context: Any) -> Any:
        try:
            with self.device.world.lock:
                lines = self.device.read_lines(self._task(request.task))
        except DaqmxFault as fault:
            return pb.ReadDigitalLinesResponse(status=fault.code)
        n = max(1, request.num_samps_per_chan)
        block = np.repeat(lines[:, None], n, axis=1)
        flat = block.ravel() if request.fill_mode_raw == GROUP_BY_CHANNEL else block.T.ravel()
        return pb.ReadDigitalLinesResponse(
            status=0, read_array=flat.astype(np.uint8).tobytes(), samps_per_chan_read=n, num_bytes_per_samp=1
        )

    # -- writing ------------------------------------------------------------------------------------

    @_rpc
    def WriteAnalogScalarF64(self, request: Any, context: Any) -> Any:
        self.device.write_analog(self._task(request.task), np.array([[request.value]]))
        return pb.WriteAnalogScalarF64Response()

    @_rpc
    def WriteAnalogF64(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        values = _channel_major(np.asarray(request.write_array, dtype=float), len(task.channels), request.data_layout_raw)
        written = self.device.write_analog(task, values)
        return pb.WriteAnalogF64Response(samps_per_chan_written=written)

    @_rpc
    def WriteDigitalLines(self, request: Any, context: Any) -> Any:
        task = self._task(request.task)
        raw = np.frombuffer(request.write_array, dtype=np.uint8).astype(bool)
        written = self.device.write_lines(task, _channel_major(raw, len(task.channels), request.data_layout_raw))
        return pb.WriteDigitalLinesResponse(samps_per_chan_written=written)

    @_rpc
    def WriteDigitalScalarU32(self, request: Any, context: Any) -> Any:
        self.device.write_port_value(self._task(request.task), int(request.value))
        return pb.WriteDigitalScalarU32Response()
