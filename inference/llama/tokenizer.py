"""SentencePiece tokenizer with LLaMA's ids, and incremental detokenization for streaming."""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

from inference.llama.errors import CheckpointError

CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"
REPLACEMENT = "\ufffd"  # what an incomplete UTF-8 byte sequence decodes to


class Tokenizer:
    """LLaMA ids: unk 0, bos 1, eos 2; pad is -1 and is never fed to the model."""

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        if not path.exists():
            raise CheckpointError(f"{path} is missing: pass --tokenizer or put tokenizer.model in the checkpoint.")
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.n_words = self.sp.vocab_size()
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.pad_id = self.sp.pad_id()

    def encode(self, text: str, *, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of text, with bos first (as Meta's generate does) and optionally eos last."""
        ids = self.sp.encode(text)
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i >= 0])

    def piece(self, token_id: int) -> str:
        """One token as text, for logprob listings: its piece with SentencePiece's word marker as a space."""
        return self.sp.id_to_piece(token_id).replace("\u2581", " ")


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas that concatenate to decode(all ids).

    Decoding pieces one at a time loses SentencePiece's leading-space rule and splits multi-byte
    characters across byte-fallback tokens, so each step decodes everything so far and emits the new
    suffix, holding back a trailing U+FFFD until the bytes that complete it arrive.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now certain."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids).rstrip(REPLACEMENT)
        return self._advance(text)

    def flush(self) -> str:
        """The rest of the text at the end of the stream, even if it ends in a broken character."""
        return self._advance(self.tokenizer.decode(self.ids))

    def _advance(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""  # a held-back character resolved differently; wait for text that extends what was sent
        delta = text[len(self.emitted):]
        self.emitted = text
        return delta


def tokenizer_train(out_path: str | Path, *, vocab_size: int = 512, corpus: Path = CORPUS) -> Path:
    """Train a LLaMA-style tokenizer (BPE, byte fallback, split digits) on the shipped corpus; deterministic."""
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # one thread keeps the merges, hence the file, identical from run to run
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.write_bytes(model.getvalue())
    return out_path
