from django.core.management.base import BaseCommand, CommandError

from inference.llama.checkpoint import tiny_llama_make
from inference.llama.errors import CheckpointError


class Command(BaseCommand):
    help = "Write a random LLaMA-1 checkpoint in Meta's layout (params.json, shards, tokenizer.model, checklist.chk)."

    def add_arguments(self, parser):
        parser.add_argument("out_dir")
        parser.add_argument("--dim", type=int, default=64)
        parser.add_argument("--layers", type=int, default=2)
        parser.add_argument("--heads", type=int, default=4)
        parser.add_argument("--vocab", type=int, default=512)
        parser.add_argument("--shards", type=int, default=1)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        try:
            out = tiny_llama_make(
                opts["out_dir"], dim=opts["dim"], n_layers=opts["layers"], n_heads=opts["heads"],
                vocab_size=opts["vocab"], n_shards=opts["shards"], seed=opts["seed"],
            )
        except (CheckpointError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {out}")
