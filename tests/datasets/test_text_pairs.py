"""Quote prompt pairs: same tokens but the opening one, readable words inside."""

from __future__ import annotations

import pytest
import torch

from featlab.datasets.text_pairs import quote_pairs, single_token, word_tokens


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    from featlab.datasets.corpus import stdlib_corpus, train_bpe_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    return AutoTokenizer.from_pretrained(
        train_bpe_tokenizer(stdlib_corpus(max_bytes=150_000), folder / "tok", 512))


def test_pairs_differ_only_in_the_opening_token(tokenizer) -> None:
    windows = torch.randint(5, len(tokenizer), (6, 20), generator=torch.Generator().manual_seed(0))
    pairs = quote_pairs(tokenizer, windows, prefix=8, words=3, seed=1)
    assert pairs.clean.shape == pairs.corrupt.shape == (6, 12)
    assert pairs.pos == 11  # the last token: the answer follows it
    differs = (pairs.clean != pairs.corrupt).nonzero()[:, 1]
    assert differs.tolist() == [8] * 6
    assert tokenizer.decode(pairs.clean[0, 8:9]) == ' "'
    assert tokenizer.decode(pairs.corrupt[0, 8:9]) == " ("
    assert torch.equal(pairs.clean[:, :8], windows[:, :8])
    assert {tokenizer.decode([int(a)]) for a in pairs.answer} == {'"'}
    assert {tokenizer.decode([int(o)]) for o in pairs.other} == {")"}
    inner = tokenizer.decode(pairs.clean[0, 9:].tolist())
    assert inner.startswith(" ") and inner.replace(" ", "").isalpha()
    again = quote_pairs(tokenizer, windows, prefix=8, words=3, seed=1)
    assert torch.equal(again.clean, pairs.clean)
    assert not torch.equal(quote_pairs(tokenizer, windows, prefix=8, words=3, seed=2).clean,
                           pairs.clean)


def test_words_are_spaced_whole_words(tokenizer) -> None:
    words = word_tokens(tokenizer)
    assert words and all(tokenizer.decode([w])[1:].isalpha() for w in words)
    assert all(len(tokenizer.decode([w])) > 3 for w in words)


def test_bad_requests_say_why(tokenizer) -> None:
    with pytest.raises(ValueError, match="not one"):
        single_token(tokenizer, " a rather long phrase")
    with pytest.raises(ValueError, match="shorter than the prefix"):
        quote_pairs(tokenizer, torch.zeros(2, 4, dtype=torch.long), prefix=8, words=2)
    with pytest.raises(ValueError, match="at least one word"):
        quote_pairs(tokenizer, torch.zeros(2, 10, dtype=torch.long), prefix=8, words=0)
