"""Routed inference with a decoder-LLM teacher through `nexus serve`: a top-1 router reads a BERT
encoder's features and the LLM (decoder_llm on a Qwen2-style Hugging Face folder) encodes only the
texts routed to it; `--routing dense` runs it on every text and gives the same outputs.

Usage: serve_llm_test.py NEXUS_BINARY SOURCE_TESTS_DIR
"""
import sys
from pathlib import Path

from serving_lib import Checks, Server, Workdir

nexus, tests = sys.argv[1], Path(sys.argv[2])
checks, work = Checks("serve_llm"), Workdir(nexus)
expect = checks.expect
rows = (tests.parent / "data" / "fortunes_category" / "test.tsv").read_text(encoding="utf-8").split("\n")[1:]
texts = [r.split("\t")[0] for r in rows if r][:48]

try:
    work.run("train", str(tests / "cli" / "serve_llm_demo.yaml"), "--run", str(work.path / "run"), "--no-eval")
    outputs = {}
    for mode in ("sparse", "dense"):
        server = Server(work, work.path / "run", *(["--routing", "dense"] if mode == "dense" else []))
        try:
            status, body = server.request("POST", "/v1/predict", {"task": "fortunes", "inputs": texts, "routing": True})
            preds = body.get("predictions", []) if status == 200 else []
            expect(len(preds) == len(texts), f"{mode}: {len(preds)} predictions for {len(texts)} texts (status {status})")
            to_qwen = sum(1 for p in preds if p["routing"].get("qwen", 0) > 0)
            ran = {t: server.metric(f'nexus_teacher_rows_total{{teacher="{t}"}}') for t in ("paraphrase", "qwen")}
            outputs[mode] = (preds, to_qwen, ran)
            expect(all(sum(1 for w in p["routing"].values() if w > 0) == 1 for p in preds),
                   f"{mode}: top-1: each text has exactly one teacher with weight > 0 ({to_qwen} of them qwen)")
            expected_qwen = to_qwen if mode == "sparse" else len(texts)
            expect(ran == {"paraphrase": len(texts), "qwen": expected_qwen},
                   f"{mode}: teacher rows encoded {ran}, expected paraphrase {len(texts)}, qwen {expected_qwen}")
        finally:
            expect(server.stop() == 0, f"{mode}: clean shutdown on SIGTERM")
    sparse, dense = outputs["sparse"][0], outputs["dense"][0]
    expect(0 < outputs["sparse"][1] < len(texts),
           f"the router sends some texts to qwen and some away ({outputs['sparse'][1]} of {len(texts)})")
    same = len(sparse) == len(dense) and all(
        a["label"] == b["label"] and max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) < 1e-5
        for a, b in zip(sparse, dense))
    expect(same, "sparse and dense routing give the same labels and scores")
finally:
    work.remove()
checks.finish()
