"""SentencePiece tokenizer with LLaMA's ids, and incremental detokenization for streaming."""

from __future__ import annotations

import io
import re
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

        # The control and unknown pieces ("<unk>", "<s>", "</s>"): plain text to SentencePiece, but
        # the special tokens themselves to transformers' tokenizers, which an API's users expect.
        self.special_ids = {
            self.sp.id_to_piece(i): i for i in range(self.n_words) if self.sp.is_control(i) or self.sp.is_unknown(i)
        }
        names = sorted(self.special_ids, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(re.escape(name) for name in names) + ")") if names else None

    def encode(self, text: str, *, bos: bool = True, eos: bool = False, special: bool = False) -> list[int]:
        """Token ids of text, with bos first (as Meta's generate does) and optionally eos last.

        special: the names of special tokens in the text ("<s>", "</s>", "<unk>") become those tokens,
        as transformers' LlamaTokenizer reads them; the text between them is encoded piece by piece.
        Meta's generate reads them as plain text (the default)."""
        if special and self._special_split is not None:
            ids = []
            for part in self._special_split.split(text):
                if part in self.special_ids:
                    ids.append(self.special_ids[part])
                elif part:
                    ids.extend(self.sp.encode(part))
        else:
            ids = self.sp.encode(text)
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i >= 0])

    def decode_special(self, ids: list[int]) -> str:
        """Text of ids with special tokens written out ("<s> Hello"), as transformers' decode does:
        the inverse of encode(special=True) for text that begins with no space."""
        out: list[str] = []
        run: list[int] = []

        def flush():
            if run:
                text = self.sp.decode(run)
                # SentencePiece drops a leading word marker as the start of a text; only the first
                # run is at the start.
                if out and self.sp.id_to_piece(run[0]).startswith("\u2581"):
                    text = " " + text
                out.append(text)
                run.clear()

        for token_id in ids:
            if self.sp.is_control(token_id) or self.sp.is_unknown(token_id):
                flush()
                out.append(self.sp.id_to_piece(token_id))
            else:
                run.append(token_id)
        flush()
        return "".join(out)

    def text_offsets(self, ids: list[int]) -> list[int]:
        """Where each token starts in decode(ids), in characters (OpenAI's text_offset); special
        tokens add no text. Linear: counted from each piece's bytes, not by decoding prefixes."""
        offsets, chars, started = [], 0, False
        for token_id in ids:
            offsets.append(chars)
            if self.sp.is_control(token_id) or self.sp.is_unknown(token_id):
                continue
            piece = self.sp.id_to_piece(token_id)
            if self.sp.is_byte(token_id):
                data = bytes([int(piece[3:-1], 16)])
            else:
                data = piece.replace("\u2581", " ").encode()
                if not started and data.startswith(b" "):
                    data = data[1:]  # the word marker SentencePiece drops at the start of a text
            started = True
            chars += sum(1 for byte in data if byte & 0xC0 != 0x80)  # UTF-8 bytes that start a character
        return offsets

    def piece(self, token_id: int) -> str:
        """One token as text, for logprob listings: its piece with SentencePiece's word marker as a space."""
        return self.sp.id_to_piece(token_id).replace("\u2581", " ")


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas that concatenate to decode(all ids).

    Decoding pieces one at a time loses SentencePiece's leading-space rule and splits multi-byte
    characters across byte-fallback tokens, so each step decodes everything so far and emits the new
    suffix, holding back a trailing U+FFFD until the bytes that complete it arrive.
    """

    def __init__(self, tokenizer: Tokenizer, context: list[int] = ()):
        """context: ids the text continues (the prompt's last token), decoded with it but not
        emitted, so a first token that starts a word keeps its space (" there", as OpenAI's API
        and vLLM give it). Without one, the text stands alone ("there", as transformers' decode
        of a continuation gives it). A context that is not a plain piece (a byte, a special
        token) is dropped: it adds nothing that decodes reliably."""
        self.tokenizer = tokenizer
        sp = tokenizer.sp
        last = list(context[-1:])
        special = bool(last) and (sp.is_byte(last[0]) or sp.is_control(last[0]) or sp.is_unknown(last[0]))
        self.context = [] if special else last
        self.context_text = tokenizer.decode(self.context)
        self.ids: list[int] = []
        self.emitted = ""

    def _decode(self) -> str:
        text = self.tokenizer.decode(self.context + self.ids)
        return text[len(self.context_text) :] if text.startswith(self.context_text) else self.tokenizer.decode(self.ids)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now certain."""
        self.ids.append(token_id)
        return self._advance(self._decode().rstrip(REPLACEMENT))

    def flush(self) -> str:
        """The rest of the text at the end of the stream, even if it ends in a broken character."""
        return self._advance(self._decode())

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
