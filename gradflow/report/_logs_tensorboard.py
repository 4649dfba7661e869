"""TensorBoard event files for ``gradflow audit`` (extra ``[tensorboard]``).

Read with the ``tensorboard`` package's own record reader and ``Event`` proto,
imported only when a log is read. A scalar is either a ``simple_value`` (torch's
``SummaryWriter``, tensorboardX) or a one-element tensor of a tag whose first
value carried the ``scalars`` plugin's metadata (TF2-style writers, Flax/clu).
A run is the event files of one directory, read in name order (a resumed run
appends a file; its repeated steps are resolved by ``_logs.from_series``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradflow.report._logs import TrainingLog, from_series, select


def event_files(path: Path) -> list[Path]:
    """The event files under ``path`` (a file, a run or a folder of runs)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*tfevents*") if p.is_file())


def _modules():
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
        from tensorboard.util import tensor_util
    except ImportError as err:
        raise ImportError(
            f"reading TensorBoard event files needs the tensorboard package "
            f"(pip install 'gradflow-jax[tensorboard]'): {err}"
        ) from err
    return event_pb2, errors, pywrap_tensorflow, tensor_util


def _scalars(file: Path, series: dict[str, tuple[list, list]]) -> None:
    event_pb2, errors, pywrap, tensor_util = _modules()
    reader = pywrap.PyRecordReader_New(str(file), 0, None, None)
    plugin: dict[str, str] = {}
    record = offset = 0
    try:
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                return
            except errors.DataLossError as err:
                raise ValueError(
                    f"{file}: record {record + 1} (byte {offset}) is truncated or "
                    f"corrupted ({err.message}); the {record} records before it "
                    f"are intact"
                ) from None
            record += 1
            data = reader.record()
            try:
                event = event_pb2.Event.FromString(data)
            except Exception as err:  # protobuf's DecodeError
                raise ValueError(
                    f"{file}: record {record} (byte {offset}) is not a TensorBoard "
                    f"event ({err})"
                ) from None
            offset += len(data) + 16  # length, its crc, data, its crc
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if (
                    value.HasField("metadata")
                    and value.metadata.plugin_data.plugin_name
                ):
                    plugin[value.tag] = value.metadata.plugin_data.plugin_name
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    x = float(value.simple_value)
                elif kind == "tensor" and plugin.get(value.tag) == "scalars":
                    a = tensor_util.make_ndarray(value.tensor)
                    if a.size != 1:
                        continue
                    x = float(a.reshape(()))
                else:
                    continue
                steps, values = series.setdefault(value.tag, ([], []))
                steps.append(int(event.step))
                values.append(x)
    finally:
        reader.file_handle.close()


def read(
    path: Path, *, key: str | None = None, loss_key: str | None = None
) -> TrainingLog:
    """Read one TensorBoard run: an event file or a directory holding one run.

    Raises:
        ValueError: a directory with several runs (the message names them: pass
            one), a truncated or corrupted record (naming the file, the record
            and its byte offset), no scalar series.
    """
    files = event_files(path)
    runs = sorted({f.parent for f in files})
    if len(runs) > 1:
        names = ", ".join(str(r) for r in runs[:20])
        raise ValueError(
            f"{path}: holds {len(runs)} TensorBoard runs ({names}); audit one of "
            f"them: pass its directory"
        )
    series: dict[str, tuple[list, list]] = {}
    for f in files:
        _scalars(f, series)
    if not series:
        raise ValueError(f"{path}: no scalar series in {len(files)} event file(s)")
    sel = select(list(series), str(path), key=key, loss_key=loss_key)
    arrays = {
        k: (np.asarray(s, np.int64), np.asarray(v, np.float64))
        for k, (s, v) in series.items()
    }
    return from_series(arrays, sel, str(path))
