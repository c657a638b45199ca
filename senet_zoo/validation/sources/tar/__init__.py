"""Images read in place from tar files: ``ILSVRC2012_img_val.tar`` as distributed, a tar of an ImageFolder tree,
and WebDataset shards (``sources.wds`` groups their members into samples). Nothing is extracted; what is read is
what extracting would give.

One module per job, imports pointing down only:

- ``headers``: the members, walked once with ``tarfile`` within bounds (negative sizes, offsets that do not
  advance, oversized extended headers, truncation: one line each); ``sniff``, what a file is from its first bytes;
- ``index``: the walk kept as JSON per tar, checked against the archive before use, rebuilt when it no longer
  matches; carried on without when its folder cannot be written;
- ``extraction``: what ``tar -x`` lays out from the members (names normalised, the last of a name wins, links
  followed inside the archive, sparse files whole);
- ``reader``: ``TarReader``, members read with ``os.pread`` in DataLoader workers.
"""
from .extraction import MAX_SPARSE_BYTES, MAX_SYMLINKS, Extracted, Member, extract, extracted_name
from .headers import BLOCK, FILE, HARDLINK, MAX_HEADER_BYTES, SYMLINK, Header, sniff, walk
from .index import INDEX_FORMAT, default_index_dir, index_file, tar_headers
from .reader import ShortRead, TarReader, member_bytes

__all__ = [
    "BLOCK", "FILE", "HARDLINK", "SYMLINK", "INDEX_FORMAT", "MAX_HEADER_BYTES", "MAX_SPARSE_BYTES", "MAX_SYMLINKS",
    "Extracted", "Header", "Member", "ShortRead", "TarReader", "default_index_dir", "extract", "extracted_name",
    "index_file", "member_bytes", "sniff", "tar_headers", "walk",
]
