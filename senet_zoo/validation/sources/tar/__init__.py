"""Images read in place from tar files (moved whole into ``reader``; split by job in the next commit)."""
from .reader import BLOCK, INDEX_FORMAT, TarReader, _scan, default_index_dir, sniff, tar_members

__all__ = ["BLOCK", "INDEX_FORMAT", "TarReader", "default_index_dir", "sniff", "tar_members", "_scan"]
