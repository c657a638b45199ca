"""The Hugging Face Hub's image-classification parquet layout (``imagenet-1k``'s ``data/validation-*.parquet``):
a column ``image``, a struct of ``bytes`` (the encoded file) and ``path`` (its original file name), and a
column ``label``, an integer class index (sorted-wnid order for ImageNet-1k).

Building the set reads only the small ``image.path`` and ``label`` columns. A worker reads the image bytes in
windows of consecutive rows of about ``WINDOW_BYTES`` (sized from the row group's metadata), streamed with
``ParquetFile.iter_batches`` through a small read buffer, and keeps the last ``KEEP_WINDOWS``: so a file written
as one row group of 6 GB costs a worker what one of 100 rows costs (``datasets`` writes image datasets in row
groups of 100 rows, which are one window each), and consecutive images cost one read per window. pyarrow reads
no less than a data page, so a page larger than a window is the floor (pyarrow's own writer puts up to 1024
rows in a page). A window before the current one restarts its row group's stream; each process opens its own
files.
"""
from __future__ import annotations

import os
from pathlib import Path

from ... import classes
from ...errors import SenetZooError
from ...images.preprocess import BadImage

WINDOW_BYTES = 8 << 20    # image bytes decoded at once by one worker
KEEP_WINDOWS = 2
FALLBACK_ROWS = 16
READ_BUFFER = 1 << 20     # pyarrow reads column chunks through a buffer this size, not whole


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SenetZooError(None, "reading parquet files needs pyarrow (pip install pyarrow)") from None
    return pq


def _check_schema(path: Path, schema) -> bool:
    """Whether ``image`` has a ``path`` field; refuses files without the columns."""
    import pyarrow as pa

    names = schema.names
    missing = [c for c in ("image", "label") if c not in names]
    if missing:
        raise SenetZooError(path, f"has no {' and no '.join(repr(c) for c in missing)} column (columns: "
                            f"{', '.join(names[:8])}); expected the Hub's image-classification layout: image "
                            "{bytes, path}, label")
    image = schema.field("image").type
    if not pa.types.is_struct(image) or image.get_field_index("bytes") < 0 or not (
            pa.types.is_binary(image.field("bytes").type) or pa.types.is_large_binary(image.field("bytes").type)):
        raise SenetZooError(path, f"column 'image' is {image}, expected a struct with 'bytes' (and 'path')")
    if not pa.types.is_integer(schema.field("label").type):
        raise SenetZooError(path, f"column 'label' is {schema.field('label').type}, expected an integer class index")
    return image.get_field_index("path") >= 0


def scan_files(files: list[Path]):
    """(names, {name: (file index, row group, row)}, {name: label}) of every row of ``files``."""
    pq = _pq()
    entries: dict[str, tuple[int, int, int]] = {}
    labels: dict[str, int] = {}
    for f, path in enumerate(files):
        try:
            pf = pq.ParquetFile(path, memory_map=True)
            has_path = _check_schema(path, pf.schema_arrow)
            columns = ["image.path", "label"] if has_path else ["label"]
            row0 = 0
            for g in range(pf.metadata.num_row_groups):
                table = pf.read_row_group(g, columns=columns, use_threads=False)
                values = table.column("label").to_pylist()
                paths = table.column("image").combine_chunks().field("path").to_pylist() if has_path \
                    else [None] * len(values)
                for r, (p, label) in enumerate(zip(paths, values)):
                    row = row0 + r
                    name = p.replace("\\", "/").rsplit("/", 1)[-1] if p else f"{path.stem}/{row:08d}"
                    if label is None or not 0 <= label < classes.NUM_CLASSES:
                        raise SenetZooError(path, f"row {row} ({name}): label {label} is not a class index 0..999"
                                            + (" (the test split has no labels)" if label == -1 else ""))
                    if name in entries:
                        other = files[entries[name][0]]
                        raise SenetZooError(path, f"row {row}: the image {name} is also in {other.name}")
                    entries[name] = (f, g, r)
                    labels[name] = int(label)
                row0 += len(values)
        except SenetZooError:
            raise
        except OSError as e:
            raise SenetZooError(path, f"cannot read it as parquet ({str(e).splitlines()[0]})") from None
        except Exception as e:  # pyarrow's ArrowInvalid & co: a damaged or truncated file
            raise SenetZooError(path, f"not a readable parquet file ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not entries:
        raise SenetZooError(files[0] if len(files) == 1 else files[0].parent, "holds no rows")
    return sorted(entries), entries, labels


class ParquetReader:
    """Image i is row ``row`` of row group ``group`` of ``files[f]``."""

    kind = "parquet"

    def __init__(self, files: list[str], entries: list[tuple[int, int, int]], names: list[str]):
        self.files = [str(p) for p in files]
        self.entries = list(entries)
        self.names = list(names)
        self._stat = []
        for p in self.files:
            try:
                st = os.stat(p)
                self._stat.append((st.st_size, st.st_mtime_ns))
            except OSError:
                self._stat.append((-1, -1))
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._open: dict = {}                  # f -> ParquetFile
        self._windows: dict = {}               # (f, g, first row) -> the window's image bytes column
        self._stream = None                    # (f, g, batch iterator, its next row)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pid"], state["_open"], state["_windows"], state["_stream"] = None, {}, {}, None
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def _file(self, f: int):
        pf = self._open.get(f)
        if pf is None:
            # a buffered stream, not a memory map: the pages of a large row group are read and let go, instead
            # of staying mapped in the worker
            pf = self._open[f] = _pq().ParquetFile(self.files[f], memory_map=False, buffer_size=READ_BUFFER,
                                                   pre_buffer=False)
        return pf

    def _window_rows(self, pf, g: int) -> int:
        """Rows per window in row group g: ``WINDOW_BYTES`` of image bytes, by the column chunk's own size
        (``FALLBACK_ROWS`` when the metadata cannot say)."""
        try:
            rg = pf.metadata.row_group(g)
            leaf = [pf.schema.column(j).path for j in range(len(pf.schema))].index("image.bytes")
            per_row = max(1, rg.column(leaf).total_uncompressed_size // max(1, rg.num_rows))
            return max(1, min(rg.num_rows, WINDOW_BYTES // per_row))
        except Exception:  # damaged metadata: the rows themselves will say whether they can be read
            return FALLBACK_ROWS

    def _row(self, f: int, g: int, r: int):
        """(the window holding row r of row group g of file f, r's place in it)."""
        if self._pid != os.getpid():  # a forked worker: its own file handles and windows
            self._reset()
        for (wf, wg, first), column in self._windows.items():
            if wf == f and wg == g and first <= r < first + len(column):
                return column, r - first
        if self._stream is None or self._stream[:2] != (f, g) or self._stream[3] > r:
            pf = self._file(f)
            # one thread: the DataLoader already runs one worker per core, and arrow's pool would compete
            # with the decodes; the whole struct, not image.bytes alone, which pyarrow 26 streams 3-7x slower
            batches = pf.iter_batches(batch_size=self._window_rows(pf, g), row_groups=[g], columns=["image"],
                                      use_threads=False)
            self._stream = (f, g, batches, 0)
        _, _, batches, first = self._stream
        for batch in batches:
            column = batch.column(0).field("bytes")
            self._stream = (f, g, batches, first + len(column))
            if r < first + len(column):
                while len(self._windows) >= KEEP_WINDOWS:
                    self._windows.pop(next(iter(self._windows)))
                self._windows[(f, g, first)] = column
                return column, r - first
            first += len(column)
        raise IndexError(f"row group {g} has {first} rows")

    def read(self, i: int) -> bytes:
        f, g, r = self.entries[i]
        try:
            column, k = self._row(f, g, r)
            data = column[k].as_py()
        except Exception as e:  # a row group that cannot be read is that image's failure
            self._stream = None   # and its stream is not resumed
            raise BadImage(f"{self.where(i)}: cannot read ({type(e).__name__}: {e})") from None
        if not data:
            raise BadImage(f"{self.where(i)}: no image bytes")
        return data

    def identity(self) -> list[tuple[str, int, int]]:
        """(file:row, the file's size, its mtime_ns): the bytes of a row change only with its file."""
        return [(f"{os.path.basename(self.files[f])}:{g}:{r}", self._stat[f][0], self._stat[f][1])
                for f, g, r in self.entries]

    def members(self) -> list[str]:
        return [f"{os.path.basename(self.files[f])}:{g}:{r}\t{name}" for (f, g, r), name in zip(self.entries, self.names)]

    def where(self, i: int) -> str:
        f, g, r = self.entries[i]
        return f"{self.files[f]}:row group {g} row {r} ({self.names[i]})"
