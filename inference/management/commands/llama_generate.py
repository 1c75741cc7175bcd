import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.llama.checkpoint import load_llama
from inference.llama.errors import CheckpointError
from inference.llama.generate import SamplingParams, generate
from inference.llama.tokenizer import Tokenizer


def _checkpoint_folder_check(folder: Path) -> None:
    """A folder without a checkpoint gets one line that says so and how to make one, before
    anything else (the tokenizer, say) complains about a file the person never thought of."""
    if not folder.is_dir():
        raise CommandError(
            f"{folder} is not a folder: pass --ckpt the folder holding params.json and consolidated.*.pth "
            f"(make one with manage.py make_tiny_llama {folder})"
        )
    if not (folder / "params.json").is_file() or not any(folder.glob("consolidated.*.pth")):
        raise CommandError(
            f"No checkpoint in {folder}: expected params.json and consolidated.*.pth "
            f"(make one with manage.py make_tiny_llama {folder})"
        )


class Command(BaseCommand):
    help = "Complete a prompt with a Meta-format LLaMA checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("--ckpt", required=True, help="folder with params.json and consolidated.NN.pth")
        parser.add_argument("--tokenizer", help="tokenizer.model (default: the one in --ckpt)")
        parser.add_argument("--prompt", required=True)
        parser.add_argument("--max-new-tokens", type=int, required=True)
        parser.add_argument("--temperature", type=float, default=0.0)
        parser.add_argument("--top-p", type=float, default=1.0)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts):
        _checkpoint_folder_check(Path(opts["ckpt"]))
        try:
            tokenizer = Tokenizer(opts["tokenizer"] or Path(opts["ckpt"]) / "tokenizer.model")
            model = load_llama(opts["ckpt"])
            params = SamplingParams(
                max_new_tokens=opts["max_new_tokens"], temperature=opts["temperature"],
                top_p=opts["top_p"], seed=opts["seed"],
            )
            completion = generate(model, tokenizer, [opts["prompt"]], params)[0]
        except (CheckpointError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            out = {"prompt_tokens": completion.prompt_tokens, "tokens": completion.tokens, "text": completion.text}
            self.stdout.write(json.dumps(out, ensure_ascii=False))
        else:
            self.stdout.write(completion.text)
