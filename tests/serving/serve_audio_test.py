"""`nexus serve` with an audio task, end to end over real HTTP: a composition of two audio teachers
(inline TorchScript on (audio, lengths)) trained on a small tone dataset written here, then served.
Good inputs: base64 WAVs of several encodings, rates and channel counts, and sample arrays with a
rate, which must agree with each other and with the dataset's labels; concurrent requests of
different lengths micro-batched together must answer as they do alone. Malformed inputs (not
base64, truncated, huge declared lengths, unsupported encodings, samples out of range, clips over
--max-audio-seconds): each a 400 naming the problem, and the server keeps serving.

Usage: serve_audio_test.py NEXUS_BINARY
"""
import base64
import hashlib
import io
import json
import math
import random
import struct
import sys
import threading
import wave

from serving_lib import Checks, Server, Workdir

nexus = sys.argv[1]
checks, work = Checks("serve_audio"), Workdir(nexus)
expect = checks.expect
TONES = [300.0, 1000.0, 3000.0]  # class i: a tone at TONES[i] Hz


def tone(hz, seconds, rate, rng):
    """A tone of random phase and level. No added noise: white noise at one rate is not white at
    another, and the splits come at different rates."""
    n, phase, amplitude = int(seconds * rate), rng.random() * 6.28, rng.uniform(0.2, 0.6)
    return [amplitude * math.sin(phase + 2 * math.pi * hz * i / rate) for i in range(n)]


def wav_bytes(samples, rate, channels=1, encoding="pcm16"):
    """A WAV of `samples` (mono floats) in the given encoding, duplicated over `channels`."""
    frames = [s for s in samples for _ in range(channels)]
    if encoding == "pcm16":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(channels), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(struct.pack(f"<{len(frames)}h", *[int(max(-1, min(1, s)) * 32767) for s in frames]))
        return buf.getvalue()
    data = struct.pack(f"<{len(frames)}f", *frames)  # IEEE float 32
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * 4 * channels, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_dataset(root, rng):
    """speech_tones: train 22.05 kHz, val 8 kHz, test 16 kHz; each split one WAV plus its TSV."""
    d = root / "tones"
    d.mkdir(parents=True)
    files = {}
    for split, rate, n in (("train", 22050, 90), ("val", 8000, 30), ("test", 16000, 30)):
        clips, rows, start = [], ["start\tlength\tlabel\tid"], 0
        for i in range(n):
            label = i % 3
            clip = tone(TONES[label], rng.uniform(0.2, 0.8), rate, rng)
            clips += clip
            rows.append(f"{start}\t{len(clip)}\t{label}\t{split}{i}")
            start += len(clip)
        (d / f"audio_{split}.wav").write_bytes(wav_bytes(clips, rate))
        (d / f"{split}.tsv").write_text("\n".join(rows) + "\n")
        for name in (f"audio_{split}.wav", f"{split}.tsv"):
            files[name] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps({"dataset_id": "tones-1", "classes": ["low", "mid", "high"],
                                                 "modality": "audio", "files": files}))


# Mean magnitude spectrum over 256-sample frames of each row's own samples (only lengths[b] of them).
SPECTRUM = """|
        def forward(self, x, lengths):
            rows = []
            for b in range(x.size(0)):
                n = int(lengths[b]) // 256 * 256
                frames = x[b, :n].reshape(-1, 256)
                rows.append(torch.fft_rfft(frames, None, 1).abs().mean(0))
            return torch.stack(rows)"""
# Energy, zero-crossing rate and peak of each row's own samples.
STATS = """|
        def forward(self, x, lengths):
            rows = []
            for b in range(x.size(0)):
                s = x[b, :int(lengths[b])]
                zc = ((s[1:] * s[:-1]) < 0).float().mean()
                rows.append(torch.stack([s.pow(2).mean(), zc, s.abs().max()]))
            return torch.stack(rows)"""

rng = random.Random(0)
write_dataset(work.path / "data", rng)
composition = work.path / "tones.yaml"
composition.write_text(f"""nexus: 1
name: tones
shared_dim: 16
teachers:
  - name: spectrum
    plugin: torchscript
    modality: audio
    options:
      modality: audio
      input_shape: [4000]
      source: {SPECTRUM}
    tower: {{plugin: mlp, options: {{hidden: 32}}}}
  - name: stats
    plugin: torchscript
    modality: audio
    options:
      modality: audio
      input_shape: [4000]
      source: {STATS}
    tower: {{plugin: linear}}
router: {{plugin: softmax}}
heads:
  - {{name: tone, task: tone, outputs: 3, plugin: linear}}
losses:
  - {{plugin: cross_entropy, head: tone}}
data:
  root: data
  tasks:
    tone: {{dataset: tones, modality: audio}}
trainer: {{steps: 150, batch_size: 16, lr: 3.0e-3, validate_every: 50, seed: 0}}
""")
import subprocess
trained = subprocess.run([nexus, "train", str(composition), "--run", str(work.path / "run")], env=work.env, capture_output=True, text=True)
if trained.returncode != 0:
    print(trained.stdout[-3000:], trained.stderr[-3000:])
    raise SystemExit(f"nexus train failed: exit {trained.returncode}")
evaluation = json.loads((work.path / "run" / "eval.json").read_text())
accuracy = evaluation["tasks"][0]["accuracy"]
expect(accuracy >= 0.9, f"trained on 22.05 kHz clips, scored on 16 kHz ones: test accuracy {accuracy:.3f} >= 0.9")

server = Server(work, work.path / "run", "--max-audio-seconds", "2", "--max-request-audio-seconds", "4", "--max-delay-ms", "50")
try:
    def predict(inputs, path="/v1/predict"):
        return server.request("POST", path, {"task": "tone", "inputs": inputs})

    def b64(data):
        return base64.b64encode(data).decode()

    clips = [(label, tone(TONES[label], 0.5, 16000, random.Random(label + 10))) for label in (0, 1, 2, 2, 1, 0)]
    forms = {
        "16 kHz PCM16 WAV": [b64(wav_bytes(c, 16000)) for _, c in clips],
        "samples at 16 kHz": [{"samples": c, "sample_rate": 16000} for _, c in clips],
    }
    for rate, channels, encoding in ((8000, 1, "pcm16"), (44100, 2, "pcm16"), (48000, 1, "float")):
        resampled = [(lbl, tone(TONES[lbl], 0.5, rate, random.Random(lbl + 10))) for lbl, _ in clips]
        forms[f"{rate} Hz {encoding} {channels}-channel WAV"] = [b64(wav_bytes(c, rate, channels, encoding)) for _, c in resampled]
    forms["samples at 22.05 kHz"] = [{"samples": tone(TONES[lbl], 0.5, 22050, random.Random(lbl + 10)), "sample_rate": 22050}
                                     for lbl, _ in clips]
    expected = [label for label, _ in clips]
    answers = {}
    for name, inputs in forms.items():
        status, body = predict(inputs)
        labels = [p["label"] for p in body.get("predictions", [])] if status == 200 else None
        answers[name] = body
        expect(status == 200 and labels == expected, f"predict, {name}: {status}, labels {labels} (expected {expected})")
    floats = [struct.unpack("<f", struct.pack("<f", x))[0] for x in clips[0][1]]  # exactly float32
    s1, e1 = predict([b64(wav_bytes(floats, 16000, encoding="float"))], "/v1/embed")
    s2, e2 = predict([{"samples": floats, "sample_rate": 16000}], "/v1/embed")
    gap = max(abs(a - b) for a, b in zip(e1["embeddings"][0], e2["embeddings"][0])) if s1 == s2 == 200 else 1e9
    expect(gap == 0, f"a float WAV and the same samples as numbers embed identically (max difference {gap:.2e})")

    # Micro-batching: clips of different lengths sent at once share forwards, and each answer equals
    # the one the clip gets alone (padding never reaches a teacher's features).
    lengths = [0.15, 1.9, 0.4, 1.1, 0.25, 0.7, 1.5, 0.3]
    singles = [tone(TONES[i % 3], s, 16000, random.Random(100 + i)) for i, s in enumerate(lengths)]
    alone = [predict([{"samples": c, "sample_rate": 16000}], "/v1/embed")[1]["embeddings"][0] for c in singles]
    together = [None] * len(singles)

    def send(i):
        together[i] = predict([{"samples": singles[i], "sample_rate": 16000}], "/v1/embed")

    def batched():
        text = server.request("GET", "/metrics")[1]
        value = lambda name: sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name))
        return value('nexus_batches_total{result="ok"}'), value('nexus_batched_requests_total{result="ok"}')

    before = batched()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(singles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worst = max(max(abs(a - b) for a, b in zip(alone[i], together[i][1]["embeddings"][0])) for i in range(len(singles)))
    forwards, requests = (a - b for a, b in zip(batched(), before))
    expect(all(t[0] == 200 for t in together) and worst < 1e-4,
           f"8 concurrent clips of 0.15-1.9 s embed as they do alone (max difference {worst:.2e})")
    expect(requests > forwards, f"...and shared forwards: {requests:.0f} requests in {forwards:.0f} batched forwards")

    good = b64(wav_bytes(clips[0][1], 16000))
    raw = wav_bytes(clips[0][1], 16000)
    huge = bytearray(raw)
    huge[40:44] = struct.pack("<I", 0xFFFFFFF0)  # the data chunk's declared size
    adpcm = bytearray(raw)
    adpcm[20:22] = struct.pack("<H", 2)
    bad = [
        ("a number instead of audio", [3], "base64 WAV string"),
        ("a string that is not base64", ["not base64!"], "base64"),
        ("base64 of something that is not a WAV", [b64(b"hello world, not a wav")], "not a WAV file"),
        ("a truncated WAV", [b64(raw[:len(raw) // 2])], "truncated"),
        ("a WAV declaring a 4 GiB data chunk", [b64(bytes(huge))], "declares 4294967280 bytes"),
        ("an ADPCM WAV", [b64(bytes(adpcm))], "encoding 2 is not supported"),
        ("a WAV over --max-audio-seconds", [b64(wav_bytes([0.1] * 48000, 16000))], "over this server's limit of 2"),
        ("clips that padded come to more than --max-request-audio-seconds", [b64(wav_bytes([0.1] * 30000, 16000))] * 3,
         "padded to the longest"),
        ("samples over the limit", [{"samples": [0.0] * 40000, "sample_rate": 16000}], "over this server's limit"),
        ("samples outside -1..1", [{"samples": [0.5, 2.0] * 200, "sample_rate": 16000}], "-1..1"),
        ("samples without a rate", [{"samples": [0.1] * 400}], "sample_rate"),
        ("a rate of 10 Hz", [{"samples": [0.1] * 400, "sample_rate": 10}], "sample_rate"),
        ("an unknown audio field", [{"samples": [0.1] * 400, "sample_rate": 16000, "gain": 2}], "unknown audio field"),
        ("a clip of 1 ms", [{"samples": [0.1] * 16, "sample_rate": 16000}], "at least 10 ms"),
        ("one bad clip among good ones", [good, good, "%%%"], "input 2"),
    ]
    for name, inputs, needle in bad:
        status, body = predict(inputs)
        message = body.get("error", "") if isinstance(body, dict) else str(body)
        expect(status == 400 and needle in message, f"{name}: {status} {message[:110]}")
    status, body = predict(forms["16 kHz PCM16 WAV"])
    expect(status == 200 and [p["label"] for p in body["predictions"]] == expected, "still serving after the malformed requests")
finally:
    code = server.stop()
    work.remove()
expect(code == 0, f"the server stops cleanly on SIGTERM (exit {code})")
checks.finish()
