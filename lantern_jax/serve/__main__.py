"""Serve the fit classifier and the explainer over HTTP.

    python -m lantern_jax.serve --classifier RUN/export --explainer RUN/export \\
        [--host 127.0.0.1 --port 8000 --max-batch 32 --max-wait-ms 5 --max-body-bytes 1048576 --timeout-s 60]

Either model may be left out (an in-house teacher served for labeling needs only --explainer).
Every shape bucket is compiled before the port opens; --compile-cache DIR keeps the compiled
programs on disk so a restart skips most of that.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import jax

from lantern_jax.models.errors import CheckpointError
from lantern_jax.serve import runner
from lantern_jax.serve.app import create_app
from lantern_jax.serve.config import ServeConfig
from lantern_jax.serve.service import load_service


def _lengths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts, got {text!r}") from None


def parse_args(argv: Sequence[str] | None):
    d = ServeConfig()
    p = argparse.ArgumentParser(prog="python -m lantern_jax.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier", help="save_hf export of the fit classifier")
    p.add_argument("--explainer", help="save_hf export of the explainer / in-house teacher decoder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at startup)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="pairs per classifier batch")
    p.add_argument("--max-gen-batch", type=int, default=None,
                   help=f"sequences per generation batch (default: min(max-batch, {d.max_gen_batch}))")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="longest wait for a batch to fill after its first example arrives")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    p.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per request, queueing included")
    p.add_argument("--max-pairs", type=int, default=d.max_pairs, help="pairs per /v1/fit request")
    p.add_argument("--classifier-max-length", type=int, default=d.classifier_max_length)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens)
    p.add_argument("--prompt-buckets", type=_lengths, default=(),
                   help="generation prompt lengths to pad to, e.g. 512,2048 (the last is the longest taken)")
    p.add_argument("--model-name", default=d.model_name, help="the model id /v1/chat/completions answers to")
    p.add_argument("--compile-cache", help="persistent JAX compilation cache folder")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    if not (args.classifier or args.explainer):
        p.error("give --classifier, --explainer or both")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("lantern_jax.serve")
    try:
        config = ServeConfig(
            max_batch=args.max_batch,
            max_gen_batch=args.max_gen_batch or min(args.max_batch, ServeConfig.max_gen_batch),
            max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes, timeout_s=args.timeout_s,
            max_pairs=args.max_pairs, classifier_max_length=args.classifier_max_length,
            max_new_tokens=args.max_new_tokens, max_prompt_tokens=args.max_prompt_tokens,
            prompt_buckets=args.prompt_buckets, model_name=args.model_name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    try:
        sock = runner.listen(args.host, args.port)  # bound early: a taken port fails before the warm-up
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        service = load_service(config, classifier=args.classifier, explainer=args.explainer)
    except (CheckpointError, ValueError, OSError) as e:
        sock.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    log.info("serving on http://%s:%d (classifier: %s, explainer: %s)", args.host, port,
             args.classifier or "none", args.explainer or "none")
    print(f"listening on http://{args.host}:{port}", flush=True)
    runner.uvicorn_server(create_app(service), log_level="warning").run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
