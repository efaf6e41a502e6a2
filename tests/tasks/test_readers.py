"""Every importer refuses an empty file, a binary file, wrong columns and text that is
not UTF-8 with a DataError naming the file and the line; good files parse as the
formats define."""
from __future__ import annotations

import pytest

from workbench.io.conllu import read_conllu
from workbench.io.errors import DataError
from workbench.io.labelled_text import read_labelled_text
from workbench.io.text import read_text_file, split_train_val
from workbench.io.tsv import read_pairs

CONLLU = (
    "# sent_id = 1\n"
    "# text = I don't know.\n"
    "1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_\n"
    "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_\n"
    "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n"
    "4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
    "4.1\tknows\tknow\tVERB\tVBZ\t_\t_\t_\t0:root\t_\n"
    "5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_\n"
    "\n"
    "# sent_id = 2\n"
    "1\tNew York\tNew York\tPROPN\tNNP\t_\t0\troot\t_\t_\n"
    "\n"
)


def _read(kind: str, path):
    if kind == "text":
        return read_text_file(path)
    if kind == "conllu":
        return read_conllu(path)
    if kind == "pairs":
        return read_pairs(path)
    return read_labelled_text(path, "text", "label")


KINDS = ["text", "conllu", "pairs", "labelled"]


def _expect_error(kind, path, line=None, words=()):
    with pytest.raises(DataError) as info:
        _read(kind, path)
    message = str(info.value)
    assert str(path) in message
    if line is not None:
        assert info.value.line == line and f"line {line}" in message
    for w in words:
        assert w in message.lower()
    return message


@pytest.mark.parametrize("kind", KINDS)
def test_empty_and_blank_files_are_refused(kind, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    _expect_error(kind, empty, words=["empty"])
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n", encoding="utf-8")
    _expect_error(kind, blank, words=["empty"])


@pytest.mark.parametrize("kind", KINDS)
def test_binary_files_are_refused_with_the_line(kind, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"text\tlabel\nfine\tx\n\x89PNG\x00\x01\x02\xff\n")
    _expect_error(kind, path, line=3, words=["binary"])


@pytest.mark.parametrize("kind", KINDS)
def test_text_that_is_not_utf8_is_refused_with_the_line(kind, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("text\tlabel\ngood\tpos\ncaf\u00e9 cr\u00e8me\tneg\n".encode("latin-1"))
    message = _expect_error(kind, path, line=3, words=["utf-8"])
    assert "0xe9" in message


@pytest.mark.parametrize("kind", KINDS)
def test_missing_files_and_folders_are_refused(kind, tmp_path):
    _expect_error(kind, tmp_path / "nope.txt", words=["does not exist"])
    _expect_error(kind, tmp_path, words=["folder"])


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffOne\r\nTwo \u00e9\r\n".encode("utf-8"))
    assert read_text_file(path) == "One\nTwo \u00e9\n"
    train, val = split_train_val("abcdefghij", 0.1)
    assert (train, val) == ("abcdefghi", "j")


# ----------------------------------------------------------------------------- CoNLL-U


def test_conllu_skips_multiword_tokens_empty_nodes_and_comments(tmp_path):
    path = tmp_path / "tiny.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    sentences = read_conllu(path)
    assert [s.words for s in sentences] == [["I", "do", "n't", "know", "."], ["New York"]]
    assert [s.tags for s in sentences] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["PROPN"]]
    assert sentences[0].line == 3 and sentences[1].line == 12


def test_conllu_without_final_blank_line_keeps_the_last_sentence(tmp_path):
    path = tmp_path / "tail.conllu"
    path.write_text("1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_", encoding="utf-8")
    assert [s.words for s in read_conllu(path)] == [["Hi"]]


@pytest.mark.parametrize("bad_line,words", [
    ("1\tI\tI\tPRON", ["10 tab-separated columns", "found 4"]),
    ("1 I I PRON PRP _ 4 nsubj _ _", ["found 1"]),
    ("x\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_", ["id"]),
    ("1\tI\tI\t_\tPRP\t_\t4\tnsubj\t_\t_", ["upos"]),
    ("3\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_", ["out of sequence"]),
])
def test_conllu_wrong_columns_name_the_line(tmp_path, bad_line, words):
    path = tmp_path / "bad.conllu"
    path.write_text("# a comment\n" + bad_line + "\n\n", encoding="utf-8")
    _expect_error("conllu", path, line=2, words=[w.lower() for w in words])


def test_conllu_with_only_comments_is_refused(tmp_path):
    path = tmp_path / "comments.conllu"
    path.write_text("# only\n# comments\n", encoding="utf-8")
    _expect_error("conllu", path, words=["no sentences"])


# ----------------------------------------------------------------------------- TSV pairs


def test_pairs_take_two_columns_and_ignore_attribution(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text("Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org\n\n# note\nHi.\tSalut.\n",
                    encoding="utf-8")
    pairs = read_pairs(path)
    assert [(p.source, p.target, p.line) for p in pairs] == [("Go.", "Va !", 1), ("Hi.", "Salut.", 4)]


@pytest.mark.parametrize("text,line,words", [
    ("a\tb\nonly one column\n", 2, ["two tab-separated columns"]),
    ("a,b\n", 1, ["two tab-separated columns"]),
    ("a\tb\n\tb\n", 2, ["source"]),
    ("a\tb\nc\t \n", 2, ["target"]),
])
def test_pairs_wrong_columns_name_the_line(tmp_path, text, line, words):
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    _expect_error("pairs", path, line=line, words=words)


# ----------------------------------------------------------------------------- CSV / TSV with labels


def test_csv_with_quotes_and_named_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,label,text\n1,pos,"Great, really great"\n2,neg,"Dull\nand long"\n3,pos,Fine\n',
                    encoding="utf-8")
    rows = read_labelled_text(path, "text", "label")
    assert [(r.text, r.label, r.line) for r in rows] == [("Great, really great", "pos", 2),
                                                          ("Dull\nand long", "neg", 3), ("Fine", "pos", 5)]


def test_tsv_is_read_by_its_header(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("sentence\tsentiment\nI liked it, a lot\t1\nnope\t0\n", encoding="utf-8")
    rows = read_labelled_text(path, "sentence", "sentiment")
    assert [(r.text, r.label) for r in rows] == [("I liked it, a lot", "1"), ("nope", "0")]


@pytest.mark.parametrize("text,line,words", [
    ("review,stars\ngood,5\n", 1, ["no column 'text'", "'review'"]),
    ("text,label\ngood,pos\nbad,neg,extra\n", 3, ["3 fields", "header has 2"]),
    ("text,label\ngood,pos\n,neg\n", 3, ["text column"]),
    ("text,label\ngood,\n", 2, ["label column"]),
])
def test_labelled_text_wrong_columns_name_the_line(tmp_path, text, line, words):
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    _expect_error("labelled", path, line=line, words=words)


def test_labelled_text_header_only_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n", encoding="utf-8")
    _expect_error("labelled", path, words=["no rows"])


def test_the_real_treebank_parses(shared_data):
    sentences = read_conllu(shared_data / "ud_english_ewt" / "en_ewt-ud-dev.conllu")
    assert len(sentences) == 2001
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
    words = {w.lower() for s in sentences for w in s.words}
    assert "n't" in words  # multiword tokens ("don't" = "do" + "n't") are read as their parts
