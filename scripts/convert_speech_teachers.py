#!/usr/bin/env python3
"""Turns two PyPI audio models into TorchScript "speech teachers" that libtorch 1.13 loads.

Every teacher written here has the same interface (torch::jit::load, then forward):

    forward(self, audio: Tensor, lengths: Tensor) -> Tensor
      audio   [B, T] float32, mono, 16000 Hz, samples in [-1, 1], zero-padded at the end
      lengths [B] int64, valid samples per row, 1 <= lengths[b] <= T
      returns [B, D] float32, one pooled feature row per input row

Row b depends only on audio[b, :lengths[b]]: each module zeroes everything past lengths[b] itself
(so the padding's values never matter), and rows never mix (checked at conversion time: a clip
alone vs inside a longer, padded batch must agree to < 1e-5).

resemblyzer (resemblyzer==0.1.4, Apache-2.0; D = 256)
  The GE2E speaker encoder of Resemblyzer: pretrained.pt is a state_dict (LSTM 40->256 x 3 layers,
  Linear 256->256, ReLU, L2 norm). Its Python front-end uses librosa; here it is re-implemented in
  TorchScript so nothing but libtorch is needed at run time:
    * volume normalisation to -30 dBFS, increase only (audio.normalize_volume); an all-zero clip is
      left as it is (the original would produce NaN);
    * NO webrtcvad silence trimming (audio.trim_long_silences): it is a C library with no libtorch
      equivalent and is not differentiable or batchable; input is expected to be speech already.
      The embedding of a clip with long pauses therefore differs somewhat from
      preprocess_wav()+embed_utterance(); `--check` reports by how much, for information;
    * mel spectrogram as librosa.feature.melspectrogram (librosa >= 0.10 defaults): n_fft 400
      (25 ms), hop 160 (10 ms), periodic Hann window, center=True with zero ("constant") padding,
      power 2, 40 Slaney-scale mel bands normalised by area (htk=False, norm='slaney'), no log.
      The filterbank is built with numpy exactly as librosa.filters.mel builds it and is stored as
      a buffer (`--check` compares it with librosa's);
    * VoiceEncoder.embed_utterance: partial utterances of 160 frames every 77 frames (rate 1.3/s),
      the last one dropped when it covers < 75 % (unless it is the only one); each partial goes
      through the LSTM and is L2-normalised, the mean of a clip's partials is L2-normalised.
  All partials of all rows of a batch go through the LSTM in one call (they all have 160 frames).

silero-vad (silero-vad==6.2.3, MIT; D = 259)
  The wheel's TorchScript file silero_vad.jit (it loads in torch 1.13) is a streaming VAD: every
  call takes 512 new samples plus the last 64 of the previous chunk, runs STFT -> 4 conv blocks
  (1 time step of 128 features per chunk) -> LSTMCell(128, 128) carrying state -> ReLU -> 1x1 conv
  -> sigmoid = speech probability. The wrapper reuses the jit's own submodules (`vad` below, so
  the weights and ops are the original ones) but reorganises the work: the STFT and conv encoder
  do not depend on the recurrent state, so they run once over every chunk of every row together;
  only the LSTMCell steps chunk by chunk, over the whole batch at once. A row has
  ceil(lengths[b] / 512) chunks, the last zero-padded, the first with 64 zeros as context, exactly
  as silero's get_speech_timestamps feeds the streaming model. Output, per row, over its chunks:
      [0:128]   mean of the LSTM hidden state h (the decoder's input)
      [128:256] standard deviation (population) of h
      [256]     mean speech probability
      [257]     max speech probability
      [258]     fraction of chunks with speech probability > 0.5
  The module also exports `chunks(audio, lengths) -> (h [B, K, 128], probs [B, K], counts [B])`
  for per-chunk use. The conversion compares the probabilities with the original streaming model
  (stateful, one chunk per call); they must agree to < 1e-4.

Why TorchScript written from Python: both models are PyTorch already, so scripting them with the
torch that libtorch matches (Debian's python3-torch 1.13, /usr/bin/python3) gives files that
torch::jit::load reads with no conversion of weights; the front-end is code, not weights, so it is
scripted too (dynamic lengths and partial counts need scripting, not tracing).

Usage:
  convert_speech_teachers.py KIND --src DIR --out DIR [--wheel WHEEL] [--spec PKG==VER]
      KIND is resemblyzer or silero-vad; DIR is the unzipped package folder of the wheel
      (resemblyzer/ or silero_vad/); scripts/fetch_models.sh runs this (speech=KIND entries).
  convert_speech_teachers.py --check [--models DIR]
      compares the converted models with the original Python packages (resemblyzer + librosa in a
      venv, build/speech-ref-python, made from scripts/speech-pins.txt when missing; PyPI only),
      re-runs the batch-independence tests and times both models (2 threads, 32 clips of ~2 s).
  convert_speech_teachers.py --bench [--models DIR]
      only the timing.
Plain conversion needs only Debian's python3 with python3-torch and python3-numpy.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"
REF_VENV = REPO / "build" / "speech-ref-python"
PINS = REPO / "scripts" / "speech-pins.txt"
SAMPLE_RATE = 16000


def _reexec_with_debian_torch():
    """The files must be written by torch 1.13 (what libtorch 1.13 reads): use Debian's python3."""
    try:
        import torch  # noqa: F401
        ok = torch.__version__.startswith("1.13")
    except ImportError:
        ok = False
    if ok:
        return
    if os.path.realpath(sys.executable) == os.path.realpath(DEBIAN_PYTHON) or \
            os.environ.get("NEXUS_SPEECH_REEXEC"):
        sys.exit("convert_speech_teachers: needs torch 1.13 (Debian's python3-torch)")
    os.environ["NEXUS_SPEECH_REEXEC"] = "1"
    os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, __file__] + sys.argv[1:])


_reexec_with_debian_torch()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from typing import Tuple  # noqa: E402


# ----------------------------------------------------------------------------------------------
# resemblyzer

RZ = dict(  # resemblyzer/hparams.py and voice_encoder.py defaults
    n_fft=400, hop_length=160, n_mels=40, partial_frames=160, partial_rate=1.3,
    min_coverage=0.75, target_dbfs=-30.0, hidden=256, layers=3, embedding=256)
RZ_FRAME_STEP = int(round((SAMPLE_RATE / RZ["partial_rate"]) / RZ["hop_length"]))  # 77


def _hz_to_mel_slaney(f):
    f = np.asanyarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    mels)


def _mel_to_hz_slaney(m):
    m = np.asanyarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filterbank(sr=SAMPLE_RATE, n_fft=400, n_mels=40, fmin=0.0, fmax=None):
    """librosa.filters.mel(sr=, n_fft=, n_mels=, htk=False, norm='slaney'), float32 [n_mels, 1+n_fft/2]."""
    fmax = sr / 2.0 if fmax is None else fmax
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


class ResemblyzerTeacher(nn.Module):
    def __init__(self, mel_fb: np.ndarray):
        super().__init__()
        self.lstm = nn.LSTM(RZ["n_mels"], RZ["hidden"], RZ["layers"], batch_first=True)
        self.linear = nn.Linear(RZ["hidden"], RZ["embedding"])
        self.register_buffer("window", torch.hann_window(RZ["n_fft"], periodic=True))
        self.register_buffer("mel_fb", torch.from_numpy(mel_fb))
        self.n_fft = RZ["n_fft"]
        self.hop = RZ["hop_length"]
        self.partial_frames = RZ["partial_frames"]
        self.frame_step = RZ_FRAME_STEP
        # coverage < min_coverage  <=>  samples in the last partial < this (exact: both integers)
        self.min_cover_samples = int(RZ["min_coverage"] * RZ["partial_frames"] * RZ["hop_length"])
        self.target_dbfs = RZ["target_dbfs"]

    @torch.jit.export
    def partial_counts(self, lengths: Tensor) -> Tensor:
        """VoiceEncoder.compute_partial_slices(n, rate=1.3, min_coverage=0.75): number of partials."""
        n_frames = torch.div(lengths + self.hop, self.hop, rounding_mode="floor")  # ceil((n+1)/hop)
        steps = (n_frames - self.partial_frames + self.frame_step + 1).clamp(min=1)
        count = torch.div(steps + self.frame_step - 1, self.frame_step, rounding_mode="floor")
        last_start = (count - 1) * self.frame_step * self.hop
        drop = ((lengths - last_start) < self.min_cover_samples) & (count > 1)
        return count - drop.to(torch.int64)

    @torch.jit.export
    def mel(self, audio: Tensor) -> Tensor:
        """[B, L] -> [B, frames, 40]: librosa.feature.melspectrogram(center=True, pad 'constant')."""
        pad = self.n_fft // 2
        x = torch.nn.functional.pad(audio, [pad, pad])
        spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.n_fft,
                          window=self.window, center=False, normalized=False, onesided=True,
                          return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1)  # [B, 201, frames]
        return torch.matmul(self.mel_fb, power).transpose(1, 2)

    def forward(self, audio: Tensor, lengths: Tensor) -> Tensor:
        audio = audio.to(torch.float32)
        lengths = lengths.to(torch.int64)
        B = audio.size(0)
        T = audio.size(1)
        if lengths.dim() != 1 or lengths.size(0) != B:
            raise ValueError("resemblyzer teacher: lengths must be [B]")
        if B == 0:
            return torch.zeros(0, self.linear.out_features, dtype=torch.float32, device=audio.device)
        if bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise ValueError("resemblyzer teacher: lengths must be in [1, audio.size(1)]")
        valid = torch.arange(T, device=audio.device).unsqueeze(0) < lengths.unsqueeze(1)
        audio = audio * valid.to(audio.dtype)
        # normalize_volume(wav, -30, increase_only=True)
        mean_sq = (audio * audio).sum(1) / lengths.to(torch.float32)
        dbfs = 10.0 * torch.log10(mean_sq.clamp(min=1e-30))
        change = self.target_dbfs - dbfs
        gain = torch.where((change > 0) & (mean_sq > 0), torch.pow(10.0, change / 20.0),
                           torch.ones_like(change))
        audio = audio * gain.unsqueeze(1)

        counts = self.partial_counts(lengths)
        frames_needed = int(((counts - 1) * self.frame_step).max()) + self.partial_frames
        # The last frame used reads up to n_fft/2 samples past the partial's end.
        L = frames_needed * self.hop + self.n_fft // 2
        if L <= T:
            audio = audio[:, :L]
        else:
            audio = torch.nn.functional.pad(audio, [0, L - T])
        mel = self.mel(audio)  # [B, frames >= frames_needed, 40]

        rows = torch.arange(B, device=audio.device).repeat_interleave(counts)
        first = torch.cumsum(counts, 0) - counts
        k = torch.arange(rows.size(0), device=audio.device) - first[rows]
        frame_idx = (k * self.frame_step).unsqueeze(1) + \
            torch.arange(self.partial_frames, device=audio.device).unsqueeze(0)
        partials = mel[rows.unsqueeze(1), frame_idx]  # [P, 160, 40]

        _, hc = self.lstm(partials)
        h = hc[0]
        emb = torch.relu(self.linear(h[-1]))
        emb = emb / torch.norm(emb, dim=1, keepdim=True).clamp(min=1e-12)
        total = torch.zeros(B, emb.size(1), dtype=emb.dtype, device=emb.device).index_add_(0, rows, emb)
        mean = total / counts.to(emb.dtype).unsqueeze(1)
        return mean / torch.norm(mean, dim=1, keepdim=True).clamp(min=1e-12)


def build_resemblyzer(src: Path):
    weights = src / "pretrained.pt"
    ckpt = torch.load(weights, map_location="cpu")
    state = ckpt["model_state"] if "model_state" in ckpt else ckpt
    model = ResemblyzerTeacher(mel_filterbank(SAMPLE_RATE, RZ["n_fft"], RZ["n_mels"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in ("window", "mel_fb")]
    # GE2E's training-only similarity scale and bias (VoiceEncoder loads with strict=False too)
    unexpected = [k for k in unexpected if k not in ("similarity_weight", "similarity_bias")]
    if missing or unexpected:
        raise SystemExit(f"resemblyzer: state_dict mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()
    info = {
        "dim": RZ["embedding"],
        "weights_file": "resemblyzer/pretrained.pt",
        "weights_path": weights,
        "front_end": {
            "volume_normalisation": {"target_dbfs": RZ["target_dbfs"], "increase_only": True,
                                     "all_zero_clip": "left as it is"},
            "vad_silence_trimming": "skipped (resemblyzer's preprocess_wav trims long silences with "
                                    "webrtcvad; not reproduced, feed speech)",
            "mel": {"n_fft": RZ["n_fft"], "win_length": RZ["n_fft"], "hop_length": RZ["hop_length"],
                    "window": "hann, periodic", "center": True, "pad_mode": "constant",
                    "power": 2.0, "n_mels": RZ["n_mels"], "fmin": 0.0, "fmax": SAMPLE_RATE / 2,
                    "mel_scale": "slaney (htk=False)", "norm": "slaney", "log": False,
                    "as": "librosa.feature.melspectrogram (librosa >= 0.10 defaults)"},
            "partials": {"frames": RZ["partial_frames"], "rate_per_s": RZ["partial_rate"],
                         "frame_step": RZ_FRAME_STEP, "min_coverage": RZ["min_coverage"],
                         "pooling": "mean of L2-normalised partial embeddings, L2-normalised"},
        },
        "output": "L2-normalised speaker embedding (VoiceEncoder.embed_utterance)",
    }
    return model, info


# ----------------------------------------------------------------------------------------------
# silero-vad

SV_CHUNK = 512
SV_CONTEXT = 64
SV_HIDDEN = 128


class SileroVadTeacher(nn.Module):
    def __init__(self, vad):
        super().__init__()
        self.vad = vad  # silero_vad.jit's _model (16 kHz): stft, encoder, decoder.rnn, decoder.decoder
        self.chunk = SV_CHUNK
        self.context = SV_CONTEXT
        self.hidden = SV_HIDDEN

    @torch.jit.export
    def chunks(self, audio: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """-> (h [B, K, 128], speech probability [B, K], chunk count per row [B]); K = max count."""
        audio = audio.to(torch.float32)
        lengths = lengths.to(torch.int64)
        B = audio.size(0)
        T = audio.size(1)
        if lengths.dim() != 1 or lengths.size(0) != B:
            raise ValueError("silero-vad teacher: lengths must be [B]")
        if B == 0:
            return (torch.zeros(0, 0, self.hidden, device=audio.device),
                    torch.zeros(0, 0, device=audio.device),
                    torch.zeros(0, dtype=torch.int64, device=audio.device))
        if bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise ValueError("silero-vad teacher: lengths must be in [1, audio.size(1)]")
        counts = torch.div(lengths + self.chunk - 1, self.chunk, rounding_mode="floor")
        K = int(counts.max())
        L = K * self.chunk
        valid = torch.arange(T, device=audio.device).unsqueeze(0) < lengths.unsqueeze(1)
        audio = audio * valid.to(audio.dtype)
        if L <= T:
            audio = audio[:, :L]
        else:
            audio = torch.nn.functional.pad(audio, [0, L - T])
        x = torch.nn.functional.pad(audio, [self.context, 0])
        frames = x.unfold(1, self.chunk + self.context, self.chunk)  # [B, K, 576]
        feats = self.vad.encoder(self.vad.stft(frames.reshape(B * K, self.chunk + self.context)))
        feats = feats.reshape(B, K, -1)  # encoder output: 1 time step per chunk
        h = torch.zeros(B, self.hidden, dtype=feats.dtype, device=feats.device)
        c = torch.zeros(B, self.hidden, dtype=feats.dtype, device=feats.device)
        hs = []
        for k in range(K):
            h, c = self.vad.decoder.rnn(feats[:, k], (h, c))
            hs.append(h)
        H = torch.stack(hs, 1)  # [B, K, 128]
        out = self.vad.decoder.decoder(H.reshape(B * K, self.hidden, 1))  # [B*K, 1, 1]
        probs = out.reshape(B, K)
        return H, probs, counts

    def forward(self, audio: Tensor, lengths: Tensor) -> Tensor:
        H, probs, counts = self.chunks(audio, lengths)
        if counts.size(0) == 0:
            return torch.zeros(0, 2 * self.hidden + 3, device=audio.device)
        K = probs.size(1)
        mask = (torch.arange(K, device=probs.device).unsqueeze(0) < counts.unsqueeze(1)).to(probs.dtype)
        n = counts.to(probs.dtype).unsqueeze(1)
        mean = (H * mask.unsqueeze(2)).sum(1) / n
        var = (((H - mean.unsqueeze(1)) * mask.unsqueeze(2)) ** 2).sum(1) / n
        p_mean = (probs * mask).sum(1, keepdim=True) / n
        p_max = probs.masked_fill(mask == 0, -1.0).max(1, keepdim=True)[0]
        p_speech = ((probs > 0.5).to(probs.dtype) * mask).sum(1, keepdim=True) / n
        return torch.cat([mean, torch.sqrt(var), p_mean, p_max, p_speech], 1)


def build_silero(src: Path):
    weights = src / "data" / "silero_vad.jit"
    full = torch.jit.load(str(weights), map_location="cpu")
    if int(full._model.context_size_samples) != SV_CONTEXT:
        raise SystemExit("silero-vad: unexpected context size")
    model = SileroVadTeacher(full._model)
    model.eval()
    info = {
        "dim": 2 * SV_HIDDEN + 3,
        "weights_file": "silero_vad/data/silero_vad.jit",
        "weights_path": weights,
        "front_end": {
            "chunk_samples": SV_CHUNK, "context_samples": SV_CONTEXT,
            "chunks_per_row": "ceil(lengths / 512), last zero-padded; first context = zeros",
            "model": "silero_vad.jit _model (16 kHz): STFT -> 4 conv blocks -> LSTMCell(128) -> "
                     "ReLU -> Conv1d(128, 1, 1) -> sigmoid; state carried chunk to chunk from zeros",
        },
        "output": {"[0:128]": "mean over chunks of the LSTMCell hidden state h",
                   "[128:256]": "population std over chunks of h",
                   "[256]": "mean speech probability", "[257]": "max speech probability",
                   "[258]": "fraction of chunks with speech probability > 0.5"},
        "extra_method": "chunks(audio, lengths) -> (h [B, K, 128], probs [B, K], counts [B])",
    }
    return model, info


def silero_streaming_probs(jit_path, wav: np.ndarray) -> np.ndarray:
    """The original model, used the way silero's get_speech_timestamps uses it."""
    full = torch.jit.load(str(jit_path), map_location="cpu")
    full.reset_states()
    x = torch.from_numpy(wav.astype(np.float32))
    out = []
    with torch.no_grad():
        for i in range(0, len(x), SV_CHUNK):
            chunk = x[i:i + SV_CHUNK]
            if len(chunk) < SV_CHUNK:
                chunk = torch.nn.functional.pad(chunk, [0, SV_CHUNK - len(chunk)])
            out.append(float(full(chunk, SAMPLE_RATE)))
    return np.array(out)


# ----------------------------------------------------------------------------------------------
# shared

KINDS = {"resemblyzer": build_resemblyzer, "silero-vad": build_silero}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def synthetic_clips(n=6, seed=0):
    """Noise-and-tone clips of varied lengths (for the conversion-time self-tests)."""
    rng = np.random.default_rng(seed)
    lengths = [400, 8000, 16000 + 123, 27000, 41000, 70001][:n]
    clips = []
    for i, n_s in enumerate(lengths):
        t = np.arange(n_s) / SAMPLE_RATE
        f0 = 110 + 40 * i
        x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
        x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n_s)
        clips.append((0.05 * x / np.max(np.abs(x))).astype(np.float32))
    return clips


def pad_batch(clips, extra=0, fill=0.0):
    T = max(len(c) for c in clips) + extra
    audio = torch.full((len(clips), T), fill, dtype=torch.float32)
    for i, c in enumerate(clips):
        audio[i, :len(c)] = torch.from_numpy(c)
    return audio, torch.tensor([len(c) for c in clips], dtype=torch.int64)


def batch_independence(model, clips) -> float:
    """max |clip alone - same clip in a longer batch padded with garbage and zeros|."""
    worst = 0.0
    with torch.no_grad():
        batched = model(*pad_batch(clips, extra=5000, fill=0.37))
        zero_padded = model(*pad_batch(clips, extra=777))
        for i, c in enumerate(clips):
            alone = model(*pad_batch([c]))
            worst = max(worst, float((alone[0] - batched[i]).abs().max()),
                        float((alone[0] - zero_padded[i]).abs().max()))
    return worst


def convert(kind: str, src: Path, out: Path, wheel, spec) -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model, info = KINDS[kind](src)
    scripted = torch.jit.script(model)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.pt"
    scripted.save(str(model_path))
    loaded = torch.jit.load(str(model_path), map_location="cpu")
    loaded.eval()

    clips = synthetic_clips()
    with torch.no_grad():
        y = loaded(*pad_batch(clips))
    if tuple(y.shape) != (len(clips), info["dim"]) or y.dtype != torch.float32 or \
            not bool(torch.isfinite(y).all()):
        raise SystemExit(f"{kind}: bad output {tuple(y.shape)} {y.dtype}")
    indep = batch_independence(loaded, clips)
    if indep >= 1e-5:
        raise SystemExit(f"{kind}: rows depend on padding/batch: max diff {indep:.3g}")
    with torch.no_grad():  # edge cases: empty batch, 1-sample and all-zero rows, bad lengths
        empty = loaded(torch.zeros(0, 10), torch.zeros(0, dtype=torch.int64))
        tiny = loaded(torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([1, 3]))
        try:
            loaded(torch.zeros(1, 10), torch.tensor([11]))
            rejected = False
        except Exception:  # torch.jit.Error
            rejected = True
    if tuple(empty.shape) != (0, info["dim"]) or tuple(tiny.shape) != (2, info["dim"]) or \
            not bool(torch.isfinite(tiny).all()) or not rejected:
        raise SystemExit(f"{kind}: edge cases failed: {tuple(empty.shape)} {tiny} {rejected}")
    checks = {"batch_independence_max_abs_diff": indep}
    if kind == "silero-vad":
        worst = 0.0
        with torch.no_grad():
            _, probs, counts = loaded.chunks(*pad_batch(clips))
        for i, c in enumerate(clips):
            ref = silero_streaming_probs(info["weights_path"], c)
            got = probs[i, :int(counts[i])].numpy()
            worst = max(worst, float(np.abs(ref - got).max()))
        if worst >= 1e-4:
            raise SystemExit(f"silero-vad: probabilities differ from the streaming model by {worst:.3g}")
        checks["speech_prob_max_abs_diff_vs_streaming_jit"] = worst

    package, _, version = (spec or "").partition("==")
    meta = {
        "source": {"package": package or None, "version": version or None,
                   "wheel": Path(wheel).name if wheel else None,
                   "wheel_sha256": sha256(Path(wheel)) if wheel else None,
                   "weights_file": info["weights_file"],
                   "weights_sha256": sha256(info["weights_path"])},
        "interface": "forward(audio: Tensor[B, T] float32 mono 16 kHz in [-1, 1], zero-padded; "
                     "lengths: Tensor[B] int64, 1..T) -> Tensor[B, D] float32; row b depends only "
                     "on audio[b, :lengths[b]]",
        "output_dim": info["dim"],
        "sample_rate": SAMPLE_RATE,
        "front_end": info["front_end"],
        "output": info["output"],
        "converted_with": {"script": "scripts/convert_speech_teachers.py",
                           "torch": torch.__version__},
        "conversion_checks": checks,
    }
    if "extra_method" in info:
        meta["extra_method"] = info["extra_method"]
    (out / "conversion.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"convert_speech_teachers: {kind} -> {model_path} (D={info['dim']}, "
          f"batch independence {indep:.2g})")


# ----------------------------------------------------------------------------------------------
# --check / --bench

def _read_wav(path: Path):
    import wave
    with wave.open(str(path), "rb") as w:
        sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        data = w.readframes(n)
    assert width == 2, path
    x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(1)
    return x, sr


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    """FFT resampling to 16 kHz (as scipy.signal.resample); both sides of a comparison get the result."""
    if sr == SAMPLE_RATE:
        return x.astype(np.float32)
    n_out = int(round(len(x) * SAMPLE_RATE / sr))
    X = np.fft.rfft(x.astype(np.float64))
    Y = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    m = min(len(X), len(Y))
    Y[:m] = X[:m]
    y = np.fft.irfft(Y, n_out) * (n_out / len(x))
    return np.clip(y, -1, 1).astype(np.float32)


ESPEAK = [("en-us", "The quick brown fox jumps over the lazy dog near the riverbank."),
          ("en-gb+f3", "Please leave a message after the tone."),
          ("de+m3", "Guten Morgen, wie geht es Ihnen heute?"),
          ("fr-fr+f2", "Le chat dort sur le canapé depuis ce matin, sans bouger."),
          ("es+m1", "Hola."),
          ("it+f4", "Questa è una frase di prova un po' più lunga delle altre, per avere molti "
                    "segmenti parziali nello stesso enunciato."),
          ("ru+m2", "Сегодня хорошая погода."),
          ("pt-br+f1", "Obrigado pela sua paciência.")]


def test_clips(tmp: Path):
    """~16 clips: espeak-ng voices (22050 Hz) and Asterisk's recorded prompts (8 kHz), at 16 kHz."""
    clips = []
    for i, (voice, text) in enumerate(ESPEAK):
        path = tmp / f"espeak{i}.wav"
        try:
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  (espeak-ng {voice} unavailable: {e})")
            continue
        x, sr = _read_wav(path)
        clips.append((f"espeak {voice}", _resample(x, sr)))
    sounds = Path("/usr/share/asterisk/sounds")
    picks = ["en_US_f_Allison/all-circuits-busy-now.wav", "en_US_f_Allison/digits/7.wav",
             "es_MX_f_Allison/agent-loginok.wav", "fr_CA_f_June/agent-newlocation.wav",
             "it_IT_m_Carlo/agent-incorrect.wav", "it_IT_m_Carlo/digits/3.wav",
             "ru_RU_f_IvrvoiceRU/agent-pass.wav", "en_US_f_Allison/agent-user.wav"]
    for p in picks:
        path = sounds / p
        if path.exists():
            x, sr = _read_wav(path)
            clips.append((f"asterisk {p}", _resample(x, sr)))
    if len(clips) < 8:
        raise SystemExit("--check: too few test clips (needs espeak-ng or asterisk's sounds)")
    return clips


def _in_reference_venv() -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("librosa", "resemblyzer", "webrtcvad"))


def _ensure_reference_venv():
    py = REF_VENV / "bin" / "python"
    stamp = REF_VENV / ".nexus-pins"
    want = PINS.read_text()
    if not (py.exists() and stamp.exists() and stamp.read_text() == want):
        print(f"--check: making {REF_VENV} from {PINS.relative_to(REPO)}")
        subprocess.run(["rm", "-rf", str(REF_VENV)], check=True)
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", str(REF_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-input", "--no-deps", "-r", str(PINS)], check=True)
        stamp.write_text(want)
    return py


def check(models: Path):
    if not _in_reference_venv():
        py = _ensure_reference_venv()
        os.environ["NEXUS_SPEECH_REEXEC"] = "1"
        os.execv(str(py), [str(py), __file__] + sys.argv[1:])
    import librosa
    import resemblyzer
    from resemblyzer import VoiceEncoder, audio as rz_audio
    torch.set_num_threads(2)
    print(f"--check: resemblyzer {getattr(resemblyzer, '__version__', '0.1.4')}, librosa "
          f"{librosa.__version__}, torch {torch.__version__}")

    fb_ref = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=400, n_mels=40)
    fb = mel_filterbank()
    print(f"mel filterbank vs librosa: max abs diff {np.abs(fb - fb_ref).max():.3g} "
          f"(max value {fb_ref.max():.3g})")
    assert np.abs(fb - fb_ref).max() < 1e-6

    rz = torch.jit.load(str(models / "resemblyzer" / "model.pt"))
    sv = torch.jit.load(str(models / "silero-vad" / "model.pt"))
    enc = VoiceEncoder(device="cpu", verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        clips = test_clips(Path(tmp))

    print("resemblyzer: cosine(TorchScript, embed_utterance(normalize_volume(wav)))  "
          "[cosine vs preprocess_wav() with webrtcvad trimming, for information]")
    cosines, trimmed = [], []
    for name, wav in clips:
        ref = enc.embed_utterance(rz_audio.normalize_volume(wav, -30, increase_only=True))
        with torch.no_grad():
            got = rz(*pad_batch([wav]))[0].numpy()
        cos = float(np.dot(ref, got) / (np.linalg.norm(ref) * np.linalg.norm(got)))
        ref_t = enc.embed_utterance(rz_audio.preprocess_wav(wav))
        cos_t = float(np.dot(ref_t, got) / (np.linalg.norm(ref_t) * np.linalg.norm(got)))
        cosines.append(cos)
        trimmed.append(cos_t)
        print(f"  {name:52s} {len(wav) / SAMPLE_RATE:5.2f} s  cos {cos:.8f}  [trimmed {cos_t:.4f}]")
    print(f"resemblyzer: {len(clips)} clips, min cosine {min(cosines):.8f} "
          f"[with trimming: min {min(trimmed):.4f}]")

    wavs = [w for _, w in clips]
    with torch.no_grad():
        batched = rz(*pad_batch(wavs, extra=3000, fill=0.5))
    for i, w in enumerate(wavs):
        ref = enc.embed_utterance(rz_audio.normalize_volume(w, -30, increase_only=True))
        cos = float(np.dot(ref, batched[i].numpy()) / np.linalg.norm(ref) / np.linalg.norm(batched[i].numpy()))
        cosines.append(cos)
    print(f"resemblyzer (all clips in one garbage-padded batch): min cosine {min(cosines[len(clips):]):.8f}")
    rz_indep = batch_independence(rz, wavs)
    print(f"resemblyzer: batch independence max abs diff {rz_indep:.3g}")

    worst = 0.0
    with torch.no_grad():
        _, probs, counts = sv.chunks(*pad_batch(wavs, extra=1000, fill=-0.3))
    meta = json.loads((models / "silero-vad" / "conversion.json").read_text())
    jit_path = _silero_jit_path(meta)
    for i, w in enumerate(wavs):
        ref = silero_streaming_probs(jit_path, w)
        got = probs[i, :int(counts[i])].numpy()
        worst = max(worst, float(np.abs(ref - got).max()))
    print(f"silero-vad: speech probabilities vs the streaming jit, max abs diff {worst:.3g}; "
          f"speech fraction per clip {np.round([float((probs[i, :int(counts[i])] > .5).float().mean()) for i in range(len(wavs))], 2).tolist()}")
    sv_indep = batch_independence(sv, wavs)
    print(f"silero-vad: batch independence max abs diff {sv_indep:.3g}")
    ok = min(cosines) >= 0.999 and worst < 1e-4 and rz_indep < 1e-5 and sv_indep < 1e-5
    bench(models, rz, sv)
    print("--check: " + ("passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


def _silero_jit_path(meta) -> Path:
    """The original silero_vad.jit: from the wheel named in conversion.json (unzipped to a temp dir)."""
    import zipfile
    wheel_dir = Path(os.environ.get("NEXUS_WHEEL_DIR", REPO / ".cache" / "wheels"))
    wheel = wheel_dir / meta["source"]["wheel"]
    tmp = Path(tempfile.mkdtemp(prefix="silero-ref-"))
    import atexit
    import shutil
    atexit.register(shutil.rmtree, tmp, True)
    with zipfile.ZipFile(wheel) as z:
        z.extract(meta["source"]["weights_file"], tmp)
    return tmp / meta["source"]["weights_file"]


def bench(models: Path, rz=None, sv=None, batch=32, seconds=2.0, repeats=3):
    torch.set_num_threads(2)
    rz = rz or torch.jit.load(str(models / "resemblyzer" / "model.pt"))
    sv = sv or torch.jit.load(str(models / "silero-vad" / "model.pt"))
    rng = np.random.default_rng(1)
    base = synthetic_clips()
    clips = []
    for i in range(batch):  # ~2 s each (1.8 - 2.2 s), speech-like tone/noise mixtures
        n = int(SAMPLE_RATE * seconds * rng.uniform(0.9, 1.1))
        src = np.tile(base[i % len(base)], n // len(base[i % len(base)]) + 1)[:n]
        clips.append(src)
    audio, lengths = pad_batch(clips)
    for name, m in (("resemblyzer", rz), ("silero-vad", sv)):
        with torch.no_grad():
            m(audio, lengths)  # warm-up (profiling executor)
            m(audio, lengths)
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                m(audio, lengths)
                best = min(best, time.perf_counter() - t0)
        print(f"bench {name}: batch {batch} x ~{seconds:.0f} s, 2 threads: {best * 1000:.0f} ms "
              f"-> {batch / best:.1f} rows/s ({batch * float(lengths.float().mean()) / SAMPLE_RATE / best:.0f}x real time)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", nargs="?", choices=sorted(KINDS))
    ap.add_argument("--src", type=Path, help="unzipped package folder of the wheel")
    ap.add_argument("--out", type=Path, help="output folder (model.pt, conversion.json)")
    ap.add_argument("--wheel", type=Path, help="the wheel --src came from (for its sha256)")
    ap.add_argument("--spec", help="package==version of that wheel")
    ap.add_argument("--check", action="store_true", help="compare with the original packages (venv)")
    ap.add_argument("--bench", action="store_true", help="time both converted models")
    ap.add_argument("--models", type=Path,
                    default=Path(os.environ.get("NEXUS_MODELS_DIR", REPO / ".cache" / "models")))
    args = ap.parse_args()
    if args.check:
        check(args.models)
    elif args.bench:
        bench(args.models)
    elif args.kind:
        if not args.src or not args.out:
            ap.error("KIND needs --src and --out")
        convert(args.kind, args.src, args.out, args.wheel, args.spec)
    else:
        ap.error("give KIND --src --out, --check or --bench")


if __name__ == "__main__":
    main()
