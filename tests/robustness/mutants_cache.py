"""Seeded mistakes in the frame cache and the preprocess job."""

from tests.robustness.mutations import Mutation

MUTATIONS = (
    Mutation(
        "a window read into a batch starts at the clip's first frame", "preprocessing/cache.py",
        "            f.seek(len(header) + start * frame)", "            f.seek(len(header))",
        ("tests/test_cache.py", "-k", "read_into"),
    ),
    Mutation(
        "cache file names hash the readable part only (ids that read alike collide)", "preprocessing/cache.py",
        'digest = hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:10]',
        'digest = hashlib.sha1(readable.encode("utf-8")).hexdigest()[:10]',
        ("tests/test_cache.py", "-k", "npy_names"),
    ),
    Mutation(
        "a changed source file is not re-decoded", "data/preprocess_job.py",
        "        or entry.source_mtime_ns != stat.st_mtime_ns\n", "",
        ("tests/test_preprocess_cli.py", "-k", "rerun_skips"),
    ),
    Mutation(
        "the recorded path is used as an OS name without decoding it", "preprocessing/cache.py",
        "return Path(self.meta.root) / original_name(entry.path)", "return Path(self.meta.root) / entry.path",
        ("tests/test_file_names.py", "-k", "tree_of_hostile"),
    ),
    Mutation(
        "the cache key hashes the name as UTF-8 before it is made printable", "data/layouts.py",
        "    clips = [_printable(c) for c in clips]\n", "",
        ("tests/test_file_names.py", "-k", "tree_of_hostile"),
    ),
    Mutation(
        "verify_cache does not compare hashes", "preprocessing/cache.py",
        "    if verify_hash and array_sha256(load_clip(cache_dir, entry)) != entry.sha256:",
        "    if False:",
        ("tests/test_cache.py", "-k", "verify_cache"),
    ),
    Mutation(
        "a clip cached under its old raw id is listed twice", "preprocessing/cache.py",
        "    entries = _without_legacy_duplicates(entries)\n", "",
        ("tests/test_file_names.py", "-k", "upgraded"),
    ),
    Mutation(
        "a RESTART keeps the frames written before it", "preprocessing/cache.py",
        "            self._file.truncate()\n", "",
        ("tests/test_cache_stream.py", "-k", "restart"),
    ),
    Mutation(
        "a RESTART keeps the hash of the dropped frames", "preprocessing/cache.py",
        "            self._file.truncate()\n        self._hash = hashlib.sha256()\n",
        "            self._file.truncate()\n",
        ("tests/test_cache_stream.py", "-k", "restart"),
    ),
    Mutation(
        "the preprocess job ignores a RESTART", "data/preprocess_job.py",
        "                    writer.restart()\n", "                    pass\n",
        ("tests/test_cache_stream.py", "-k", "old_records"),
    ),
    Mutation(
        "the free space is not checked before a clip is written", "preprocessing/cache.py",
        "        if need > usage.free:", "        if False:",
        ("tests/test_cache_stream.py", "-k", "does_not_fit or reserve"),
    ),
    Mutation(
        "a clip that fails mid-write leaves its temporary file", "preprocessing/cache.py",
        "                os.unlink(self._tmp)\n", "                pass\n",
        ("tests/test_cache_stream.py", "-k", "midway or error_inside"),
    ),
)
