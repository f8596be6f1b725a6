"""Seeded mistakes in what classify writes: file names, CSV cells, the report, partial writes."""

from tests.robustness.mutations import Mutation

NAMES = ("tests/test_file_names.py",)

MUTATIONS = (
    Mutation(
        "a backslash is not escaped (names become ambiguous)", "preprocessing/names.py",
        '_SHORT = {"\\\\": "\\\\\\\\", ', '_SHORT = {"\\\\": "\\\\", ',
        (*NAMES, "-k", "distinct or random"),
    ),
    Mutation(
        "undecodable bytes written as U+FFFD (not reversible)", "preprocessing/names.py",
        '        return f"\\\\x{code - 0xDC00:02x}"', '        return "\\ufffd"',
        (*NAMES, "-k", "by_hand or random"),
    ),
    Mutation(
        "predictions.jsonl writes the raw path", "app/inference.py",
        '"path": printable_name(p.path),', '"path": p.path,',
        (*NAMES, "-k", "hostile_name"),
    ),
    Mutation(
        "predictions.csv cells not neutralized", "app/commands/classify.py",
        "name = spreadsheet_safe(printable_name(p.path))\n            for rank, (label, score) in enumerate(p.labels",
        "name = printable_name(p.path)\n            for rank, (label, score) in enumerate(p.labels",
        (*NAMES, "-k", "hostile_name"),
    ),
    Mutation(
        "spreadsheet_safe forgets the minus sign", "preprocessing/names.py",
        '("=", "+", "-", "@", "\\t", "\\r", "\'")', '("=", "+", "@", "\\t", "\\r", "\'")',
        (*NAMES, "-k", "spreadsheet_safe"),
    ),
    Mutation(
        "report shows the raw path", "app/report.py",
        '_td(name, escape(name), "file"),', '_td(p.path, escape(p.path), "file"),',
        (*NAMES, "-k", "hostile_name"),
    ),
    Mutation(
        "the first output error loses the rest", "app/commands/classify.py",
        "        except OSError as e:\n            errors.append(",
        "        except OSError as e:\n            raise\n            errors.append(",
        (*NAMES, "-k", "cannot_be_written"),
    ),
    Mutation(
        "submission ids with a comma are not quoted", "app/metrics/yt8m.py",
        """    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"') else cell""",
        "    return cell",
        (*NAMES, "-k", "kaggle"),
    ),
    Mutation(
        "top-k labels listed worst first", "app/inference.py",
        "        top_s, top_i = scores.topk(k, dim=-1)",
        "        top_s, top_i = scores.topk(k, dim=-1, largest=False)",
        ("tests/test_classify.py", "-k", "match_the_model"),
    ),
)
