#!/usr/bin/env python3
"""Export a transformers ``Sam3Model`` checkpoint to a samclipseg engine bundle.

    export_sam3.py CHECKPOINT_DIR OUT_DIR [--name N] [--licence L] [--tolerance T] [--no-int8]

Writes ``text_encoder.onnx``, ``image_encoder.onnx``, ``decoder.onnx``,
``tokenizer.json`` and ``bundle.toml`` into OUT_DIR, following
``engines/BUNDLE.md`` (format version 1), then verifies the three ONNX graphs
(run with ONNX Runtime on CPU) against the PyTorch model on a photo and a batch
of two prompts.  Exits non-zero if any output differs by more than the
tolerance:

    max |onnx - torch|  <=  T * max(1, max |torch|)      for every output

i.e. an absolute criterion for outputs of magnitude <= 1 and a relative one
(relative to the output's largest magnitude) for larger outputs.

With ``--tracker`` (a ``sam3_video`` checkpoint, e.g. facebook/sam3) the bundle
also gets SAM 3's video tracker: the image encoder gains the tracker's features
and four ``tracker_*`` engines plus a ``[tracker]`` table are written
(``export_sam3_tracker.py``, BUNDLE.md "Video tracker engines").

Then, unless ``--no-int8``, the int8 variants of the image encoder and decoder
(``quantize_bundle.py``, run once the fp32 export, done in a child process, has
exited and freed what PyTorch held):
static QDQ int8 (OpenVINO), calibrated on ``--int8-calibration`` photos that
ship with scikit-image and the repository (no download), and dynamic int8
(ONNX Runtime's CPU provider),
each checked against the fp32 engines on held-out photos and recorded in
``bundle.toml`` only if within quantize_bundle's tolerances.

Exit codes: 0 ok, 2 bad arguments / refused input, 3 verification failed,
4 an int8 variant failed its check (the fp32 bundle is written and verified;
bundle.toml records no int8 variant).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import time
import tomllib

import export_sam3_tracker  # its torch imports are lazy: cheap at start

CONTEXT_LENGTH = 32
PAD_TOKEN_ID = 49407
BOS_TOKEN_ID = 49406
FORMAT_VERSION = 1
EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # bytes of weights; ONNX protobuf limit is 2 GiB

TEXT_INPUTS = ["input_ids", "attention_mask"]
TEXT_OUTPUTS = ["text_features"]
IMAGE_INPUTS = ["pixel_values"]
IMAGE_OUTPUTS = ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"]
DECODER_INPUTS = ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2", "text_features", "attention_mask"]
DECODER_OUTPUTS = ["pred_logits", "pred_boxes", "pred_masks", "presence_logits", "semantic_seg"]

TOKENIZER_CHECKS = {
    "a person": [49406, 320, 2533, 49407],
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
}


class Refused(Exception):
    """A clear, user-facing reason to stop (exit code 2)."""


def log(msg: str) -> None:
    print(f"[export_sam3] {msg}", flush=True)


# --------------------------------------------------------------------------- checkpoint


def read_checkpoint(ckpt_dir: str) -> tuple[dict, list[str]]:
    """Check that CKPT_DIR is a SAM 3 checkpoint; return (config.json, weight files)."""
    if not os.path.exists(ckpt_dir):
        raise Refused(f"checkpoint directory {ckpt_dir!r} does not exist")
    if not os.path.isdir(ckpt_dir):
        raise Refused(f"checkpoint path {ckpt_dir!r} is not a directory")
    cfg_path = os.path.join(ckpt_dir, "config.json")
    if not os.path.isfile(cfg_path):
        raise Refused(f"{ckpt_dir!r} has no config.json: not a transformers checkpoint directory")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type")
    if model_type == "sam3_video":
        # facebook/sam3 style: a video config whose detector_config is the Sam3Config
        det = cfg.get("detector_config") or {}
        if det.get("model_type", "sam3") != "sam3":
            raise Refused(f"{cfg_path}: sam3_video config without a sam3 detector_config")
    elif model_type != "sam3":
        raise Refused(
            f"{cfg_path}: model_type is {model_type!r}, expected 'sam3' (a transformers Sam3Model checkpoint); "
            "refusing to export something that is not SAM 3"
        )
    single = os.path.join(ckpt_dir, "model.safetensors")
    index = os.path.join(ckpt_dir, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(ckpt_dir, s) for s in shards]
        missing = [p for p in files if not os.path.isfile(p)]
        if missing:
            raise Refused(f"checkpoint shards missing: {missing}")
    else:
        raise Refused(f"{ckpt_dir!r} has no model.safetensors (nor model.safetensors.index.json)")
    return cfg, files


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(files: list[str]) -> str:
    """SHA-256 of model.safetensors; for a sharded checkpoint, SHA-256 of the
    newline-joined hex digests of the shards sorted by file name."""
    if len(files) == 1:
        return sha256_file(files[0])
    digests = [sha256_file(p) for p in sorted(files, key=os.path.basename)]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


# --------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    # the byte -> printable-unicode table of GPT-2 / CLIP byte-level BPE
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_clip_tokenizer():
    """A fast transformers CLIPTokenizer built offline from open_clip's
    bpe_simple_vocab_16e6.txt.gz, with vocab/merges exactly as OpenAI CLIP builds them."""
    import open_clip
    from transformers import CLIPTokenizer

    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=CONTEXT_LENGTH)


def write_tokenizer_json(ckpt_dir: str, out_path: str, hf_tokenizer) -> None:
    """tokenizer.json: the checkpoint's own if it has one, else the one of HF_TOKENIZER;
    always set to pad to 32 with id 49407 and to truncate to 32."""
    from tokenizers import Tokenizer

    own = os.path.join(ckpt_dir, "tokenizer.json")
    tok = Tokenizer.from_file(own) if os.path.isfile(own) else Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    pad_token = tok.id_to_token(PAD_TOKEN_ID)
    tok.enable_truncation(max_length=CONTEXT_LENGTH)
    tok.enable_padding(length=CONTEXT_LENGTH, pad_id=PAD_TOKEN_ID, pad_token=pad_token)
    tok.save(out_path, pretty=False)


def check_tokenizer(tokenizer_json: str, processor) -> None:
    """Tokenizer.from_file (what the Rust `tokenizers` crate loads) must give the
    same ids and mask as the transformers processor, and CLIP's known ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    prompts = list(TOKENIZER_CHECKS) + ["cat", "a cup of coffee", "A  Red   Ball!", "café über 12 dogs' tails"]
    for p in prompts:
        enc = tok.encode(p)
        ref = processor(text=p)
        ids_ref, mask_ref = list(ref["input_ids"]), list(ref["attention_mask"])
        if ids_ref and isinstance(ids_ref[0], list):
            ids_ref, mask_ref = ids_ref[0], mask_ref[0]
        if enc.ids != ids_ref or enc.attention_mask != mask_ref:
            raise RuntimeError(f"tokenizer mismatch for {p!r}: tokenizers {enc.ids} vs processor {ids_ref}")
        want = TOKENIZER_CHECKS.get(p)
        if want is not None and enc.ids[: len(want)] != want:
            raise RuntimeError(f"tokenizer gives {enc.ids[:len(want)]} for {p!r}, expected {want}")
    long = " ".join(["dog"] * 60)
    enc = tok.encode(long)
    assert len(enc.ids) == CONTEXT_LENGTH and enc.ids[0] == BOS_TOKEN_ID and enc.ids[-1] == PAD_TOKEN_ID
    log(f"tokenizer ok: {len(prompts)} prompts identical to the processor; 'a person' -> {TOKENIZER_CHECKS['a person']}")


# --------------------------------------------------------------------------- model + processor


def load_model(ckpt_dir: str):
    import torch
    from transformers import Sam3Model

    model = Sam3Model.from_pretrained(ckpt_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    return model


def load_processor(ckpt_dir: str, image_size: int):
    """Sam3Processor from the checkpoint's own image-processor and tokenizer files
    where it has them; otherwise the default Sam3ImageProcessor for this image size
    and/or the CLIP tokenizer built offline from open_clip's BPE vocabulary."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    has = lambda f: os.path.isfile(os.path.join(ckpt_dir, f))  # noqa: E731
    if has("preprocessor_config.json") or has("processor_config.json"):
        image_processor = Sam3ImageProcessor.from_pretrained(ckpt_dir)
        log("image processor: the checkpoint's own")
    else:
        image_processor = Sam3ImageProcessor(size={"height": image_size, "width": image_size})
        log("image processor: default Sam3ImageProcessor")
    if has("tokenizer.json") or (has("vocab.json") and has("merges.txt")):
        tokenizer = CLIPTokenizer.from_pretrained(ckpt_dir)
        log("tokenizer: the checkpoint's own")
    else:
        tokenizer = build_clip_tokenizer()
        log("tokenizer: CLIP BPE built from open_clip's bpe_simple_vocab_16e6.txt.gz")
    return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)


class TextEncoder:
    @staticmethod
    def make(model):
        import torch

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

        return _M(model).eval()


class ImageEncoder:
    @staticmethod
    def make(model):
        import torch

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                v = self.m.get_vision_features(pixel_values=pixel_values)
                f, p = v.fpn_hidden_states, v.fpn_position_encoding
                return f[0], f[1], f[2], p[2]

        return _M(model).eval()


class Decoder:
    """Image features of ONE image (batch 1), expanded to the prompt batch inside the graph."""

    @staticmethod
    def make(model):
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2, text_features, attention_mask):
                b = text_features.shape[0]
                f0 = fpn_feat_0.expand(b, -1, -1, -1)
                f1 = fpn_feat_1.expand(b, -1, -1, -1)
                f2 = fpn_feat_2.expand(b, -1, -1, -1)
                p2 = fpn_pos_2.expand(b, -1, -1, -1)
                # Sam3Model.forward drops the last FPN level ([:-1]) and, for text prompts,
                # reads only the position encoding of level 2: the 4th entries and the
                # position encodings of levels 0-1 are placeholders that are never used.
                vision = Sam3VisionEncoderOutput(
                    last_hidden_state=None,
                    fpn_hidden_states=(f0, f1, f2, f2),
                    fpn_position_encoding=(p2, p2, p2, p2),
                )
                text = BaseModelOutputWithPooling(last_hidden_state=text_features, pooler_output=text_features)
                out = self.m(vision_embeds=vision, text_embeds=text, attention_mask=attention_mask)
                return out.pred_logits, out.pred_boxes, out.pred_masks, out.presence_logits, out.semantic_seg

        return _M(model).eval()


def torch_reference(model, pixel_values, input_ids, attention_mask):
    """The PyTorch reference for one image and a batch of prompts: split outputs plus
    the whole Sam3Model.forward (image repeated over the prompts)."""
    import torch

    with torch.no_grad():
        text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        vision = model.get_vision_features(pixel_values=pixel_values)
        b = input_ids.shape[0]
        out = model(pixel_values=pixel_values.expand(b, -1, -1, -1), input_ids=input_ids, attention_mask=attention_mask)
    ref = {
        "text_features": text,
        "fpn_feat_0": vision.fpn_hidden_states[0],
        "fpn_feat_1": vision.fpn_hidden_states[1],
        "fpn_feat_2": vision.fpn_hidden_states[2],
        "fpn_pos_2": vision.fpn_position_encoding[2],
        "pred_logits": out.pred_logits,
        "pred_boxes": out.pred_boxes,
        "pred_masks": out.pred_masks,
        "presence_logits": out.presence_logits,
        "semantic_seg": out.semantic_seg,
    }
    return {k: v.detach().contiguous() for k, v in ref.items()}, out


# --------------------------------------------------------------------------- ONNX export


def _rename_dims(onnx_path: str, canonical: str) -> None:
    """Give every symbolic dimension of the graph inputs/outputs the bundle's name
    (`batch` or `image_batch`), consistently through the graph's value_info."""
    import onnx

    m = onnx.load(onnx_path, load_external_data=False)
    syms = set()
    for vi in list(m.graph.input) + list(m.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                syms.add(d.dim_param)
    if not syms or syms == {canonical}:
        return
    if len(syms) != 1:
        raise RuntimeError(f"{onnx_path}: expected one symbolic dimension in the inputs/outputs, found {sorted(syms)}")
    old = syms.pop()
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param == old:
                d.dim_param = canonical
    onnx.save(m, onnx_path)  # no external data is touched: only called for graphs stored inline


def export_onnx(module, args, path: str, input_names, output_names, dynamic: dict, dim_name: str) -> None:
    import torch

    for p in (path, path + ".data"):
        if os.path.exists(p):
            os.remove(p)
    t0 = time.time()
    program = torch.onnx.export(
        module,
        args,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=dynamic,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    # external data only when the graph's own weights approach protobuf's 2 GiB limit
    weight_bytes = sum(
        v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None
    )
    big = weight_bytes > EXTERNAL_DATA_THRESHOLD
    # symbolic dims: give them the bundle's name before saving
    sym_names = set()
    for v in list(program.model.graph.inputs) + list(program.model.graph.outputs):
        for d in v.shape or []:
            if not isinstance(d, int) and getattr(d, "value", None) is not None:
                sym_names.add(d.value)
    program.save(path, external_data=big)
    if not big:
        _rename_dims(path, dim_name)
    elif sym_names and sym_names != {dim_name}:
        # large graph: rename in the saved proto without touching the external data file
        import onnx

        m = onnx.load(path, load_external_data=False)
        for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in sym_names:
                    d.dim_param = dim_name
        onnx.save(m, path)
    size = os.path.getsize(path) + (os.path.getsize(path + ".data") if os.path.exists(path + ".data") else 0)
    log(f"exported {os.path.basename(path)} ({size / 1e6:.1f} MB{', external data' if big else ''}) in {time.time() - t0:.0f} s")


def rotate_pairwise_as_matmul(x):
    """transformers' ``rotate_pairwise`` (out[2i] = -x[2i+1], out[2i+1] = x[2i]) as
    a product with a constant 0/+-1 matrix: the same numbers exactly, but one
    MatMul in the graph instead of the slices, negation and stack that
    OpenVINO runs on slow reference kernels (12-18% of the medium image
    encoder in bf16, measured with its per-layer counters; engines/BENCHMARK.md)."""
    import torch

    d = x.shape[-1]
    r = torch.zeros(d, d, dtype=x.dtype)
    even = torch.arange(0, d, 2)
    r[even + 1, even] = -1.0
    r[even, even + 1] = 1.0
    return x @ r


def export_all(model, processor, out_dir: str, video_model=None) -> None:
    """The three detector engines; with ``video_model`` (a Sam3VideoModel whose
    detector is ``model``) the image encoder also outputs the tracker's features."""
    import torch
    from torch.export import Dim
    from transformers.models.sam3 import modeling_sam3
    from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video

    # The ViT's rotary embedding, exported as one product (see above); the tracker's
    # memory attention uses the same pairwise rotation.
    modeling_sam3.rotate_pairwise = rotate_pairwise_as_matmul
    modeling_sam3_tracker_video.rotate_pairwise = rotate_pairwise_as_matmul

    s = processor.image_processor.size["height"]
    enc = processor(text=["a person", "a photo of a cat"], return_tensors="pt")
    ids, mask = enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)
    batch = Dim("batch", min=1, max=1024)
    image_batch = Dim("image_batch", min=1, max=64)

    export_onnx(
        TextEncoder.make(model), (ids, mask), os.path.join(out_dir, "text_encoder.onnx"),
        TEXT_INPUTS, TEXT_OUTPUTS, {"input_ids": {0: batch}, "attention_mask": {0: batch}}, "batch",
    )
    pv = torch.randn(2, 3, s, s)
    if video_model is None:
        image_encoder, image_outputs = ImageEncoder.make(model), IMAGE_OUTPUTS
    else:
        image_encoder = export_sam3_tracker.wrappers(video_model)["image_encoder"]
        image_outputs = IMAGE_OUTPUTS + export_sam3_tracker.TRACKER_IMAGE_OUTPUTS
    export_onnx(
        image_encoder, (pv,), os.path.join(out_dir, "image_encoder.onnx"),
        IMAGE_INPUTS, image_outputs, {"pixel_values": {0: image_batch}}, "image_batch",
    )
    with torch.no_grad():
        feats = ImageEncoder.make(model)(pv[:1])[:4]
        text = TextEncoder.make(model)(ids, mask)
    export_onnx(
        Decoder.make(model), (*feats, text, mask), os.path.join(out_dir, "decoder.onnx"),
        DECODER_INPUTS, DECODER_OUTPUTS,
        {"fpn_feat_0": None, "fpn_feat_1": None, "fpn_feat_2": None, "fpn_pos_2": None,
         "text_features": {0: batch}, "attention_mask": {0: batch}},
        "batch",
    )


# --------------------------------------------------------------------------- manifest

ONNX_DTYPES = {1: "float32", 7: "int64", 6: "int32", 9: "bool", 10: "float16", 16: "bfloat16", 2: "uint8"}


def onnx_signature(path: str) -> dict:
    import onnx

    m = onnx.load(path, load_external_data=False)
    init = {i.name for i in m.graph.initializer}

    def tensors(vs):
        out = []
        for v in vs:
            if v.name in init:
                continue
            tt = v.type.tensor_type
            shape = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in tt.shape.dim]
            out.append({"name": v.name, "dtype": ONNX_DTYPES.get(tt.elem_type, f"onnx:{tt.elem_type}"), "shape": shape})
        return out

    return {"inputs": tensors(m.graph.input), "outputs": tensors(m.graph.output)}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def resample_name(resample) -> str:
    from transformers.image_utils import PILImageResampling

    try:
        return PILImageResampling(int(resample)).name.lower()
    except Exception:
        return str(getattr(resample, "value", resample)).lower()


def write_manifest(out_dir: str, *, name, source, sha, licence, processor, model_cfg, signatures,
                   tracker: dict | None = None) -> str:
    import onnx
    import torch
    import transformers

    ip = processor.image_processor
    s = int(ip.size["height"])
    if int(ip.size["width"]) != s:
        raise Refused(f"processor size {dict(ip.size)} is not square")
    mask_shape = next(t["shape"] for t in signatures["decoder"]["outputs"] if t["name"] == "pred_masks")
    doc = {
        "bundle": {
            "format_version": FORMAT_VERSION,
            "family": "sam3",
            "name": name,
            "source_checkpoint": source,
            "source_sha256": sha,
            "weights_licence": licence,
            "exported_with": f"transformers {transformers.__version__}, torch {torch.__version__.split('+')[0]}, onnx {onnx.__version__}",
        },
        "preprocess": {
            "image_size": s,
            "resample": resample_name(ip.resample),
            "rescale_factor": float(ip.rescale_factor),
            "image_mean": [float(x) for x in ip.image_mean],
            "image_std": [float(x) for x in ip.image_std],
        },
        "text": {"tokenizer": "tokenizer.json", "context_length": CONTEXT_LENGTH, "pad_token_id": PAD_TOKEN_ID},
        "decoder": {
            "num_queries": int(model_cfg.detr_decoder_config.num_queries),
            "mask_size": int(mask_shape[-1]),
            "default_threshold": 0.5,
            "mask_threshold": 0.5,
        },
    }
    lines = ["# samclipseg engine bundle, see engines/BUNDLE.md. Written by engines/export_sam3.py."]
    for section, kv in doc.items():
        lines.append(f"\n[{section}]")
        for k, v in kv.items():
            lines.append(f"{k} = {_toml_value(v)}")
    if tracker is not None:
        lines.append("\n[tracker]")
        for k, v in tracker.items():
            lines.append(f"{k} = {_toml_value(v)}")
    for engine in signatures:
        lines.append(f"\n[engines.{engine}]")
        lines.append(f'file = "{engine}.onnx"')
        for io in ("inputs", "outputs"):
            items = ",\n".join("  " + _toml_value(t) for t in signatures[engine][io])
            lines.append(f"{io} = [\n{items},\n]")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # must parse
    path = os.path.join(out_dir, "bundle.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def check_signatures(signatures: dict, model_cfg, image_size: int) -> None:
    """The exported graphs must have exactly the tensors of BUNDLE.md."""
    d = model_cfg.detr_decoder_config.hidden_size
    c = model_cfg.vision_config.fpn_hidden_size
    expect = {
        "text_encoder": (TEXT_INPUTS, TEXT_OUTPUTS),
        "image_encoder": (IMAGE_INPUTS, IMAGE_OUTPUTS),
        "decoder": (DECODER_INPUTS, DECODER_OUTPUTS),
    }
    tracker = "tracker_memory_attention" in signatures
    if tracker:
        expect.update(export_sam3_tracker.ENGINES)
    for eng, (ins, outs) in expect.items():
        got_in = [t["name"] for t in signatures[eng]["inputs"]]
        got_out = [t["name"] for t in signatures[eng]["outputs"]]
        if eng == "image_encoder" and tracker:
            outs = outs + export_sam3_tracker.TRACKER_IMAGE_OUTPUTS
        if got_in != ins or got_out != outs:
            raise RuntimeError(f"{eng}: tensors {got_in} -> {got_out}, expected {ins} -> {outs}")
    sig = {(e, t["name"], io): t for e in signatures for io in ("inputs", "outputs") for t in signatures[e][io]}
    want = {
        ("text_encoder", "input_ids", "inputs"): ("int64", ["batch", CONTEXT_LENGTH]),
        ("text_encoder", "attention_mask", "inputs"): ("int64", ["batch", CONTEXT_LENGTH]),
        ("text_encoder", "text_features", "outputs"): ("float32", ["batch", CONTEXT_LENGTH, d]),
        ("image_encoder", "pixel_values", "inputs"): ("float32", ["image_batch", 3, image_size, image_size]),
        ("decoder", "text_features", "inputs"): ("float32", ["batch", CONTEXT_LENGTH, d]),
        ("decoder", "attention_mask", "inputs"): ("int64", ["batch", CONTEXT_LENGTH]),
        ("decoder", "pred_logits", "outputs"): ("float32", ["batch", model_cfg.detr_decoder_config.num_queries]),
        ("decoder", "presence_logits", "outputs"): ("float32", ["batch", 1]),
    }
    for key, (dt, shape) in want.items():
        t = sig[key]
        if t["dtype"] != dt or t["shape"] != shape:
            raise RuntimeError(f"{key}: {t['dtype']} {t['shape']}, expected {dt} {shape}")
    for i in range(3):
        a = sig[("image_encoder", f"fpn_feat_{i}", "outputs")]
        b = sig[("decoder", f"fpn_feat_{i}", "inputs")]
        if a["shape"][1:] != b["shape"][1:] or b["shape"][0] != 1 or a["shape"][0] != "image_batch" or a["shape"][1] != c:
            raise RuntimeError(f"fpn_feat_{i}: image encoder {a['shape']} vs decoder {b['shape']}")


# --------------------------------------------------------------------------- verification


def ort_sessions(out_dir: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return {
        e: ort.InferenceSession(os.path.join(out_dir, f"{e}.onnx"), so, providers=["CPUExecutionProvider"])
        for e in ("text_encoder", "image_encoder", "decoder")
    }


def run_onnx(sessions, pixel_values, input_ids, attention_mask, timings: dict | None = None):
    """The Rust pipeline in miniature: text encoder, image encoder (one image), decoder."""
    import numpy as np

    def timed(name, fn):
        t0 = time.perf_counter()
        r = fn()
        if timings is not None:
            timings.setdefault(name, []).append(time.perf_counter() - t0)
        return r

    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
    (text,) = timed("text_encoder", lambda: sessions["text_encoder"].run(None, {"input_ids": ids, "attention_mask": mask}))
    feats = timed("image_encoder", lambda: sessions["image_encoder"].run(
        None, {"pixel_values": np.ascontiguousarray(pixel_values, dtype=np.float32)}))
    dec_in = dict(zip(IMAGE_OUTPUTS, feats))
    dec_in.update({"text_features": text, "attention_mask": mask})
    dec = timed("decoder", lambda: sessions["decoder"].run(None, dec_in))
    out = {"text_features": text}
    out.update(dict(zip(IMAGE_OUTPUTS, feats)))
    out.update(dict(zip(DECODER_OUTPUTS, dec)))
    return out


def compare(ref: dict, got: dict, tol: float) -> tuple[bool, list[str]]:
    import numpy as np

    ok, lines = True, []
    for k, r in ref.items():
        r = r.numpy() if hasattr(r, "numpy") else np.asarray(r)
        g = np.asarray(got[k])
        if r.shape != g.shape:
            ok = False
            lines.append(f"  {k:16s} SHAPE MISMATCH torch {r.shape} onnx {g.shape}")
            continue
        diff = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size else 0.0
        scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
        good = diff <= tol * scale
        ok &= good
        lines.append(
            f"  {k:16s} max|diff| {diff:.3e}  max|torch| {scale if scale > 1 else float(np.max(np.abs(r))):.3e}  "
            f"rel {diff / scale:.3e}  {'ok' if good else 'FAIL'}"
        )
    return ok, lines


def verification_photo():
    import numpy as np
    import skimage.data

    img = skimage.data.astronaut()  # 512x512 RGB
    return np.ascontiguousarray(img[20:470, 60:400])  # non-square crop


def verify(model, processor, out_dir: str, tol: float, threads: int, bench: int) -> bool:
    import numpy as np
    from PIL import Image

    photo = Image.fromarray(verification_photo())
    prompts = ["a person", "a photo of a cat"]
    enc = processor(images=photo, text=prompts, return_tensors="pt")
    ref, _ = torch_reference(model, enc["pixel_values"], enc["input_ids"], enc["attention_mask"])
    sessions = ort_sessions(out_dir, threads)
    timings: dict = {}
    got = run_onnx(sessions, enc["pixel_values"].numpy(), enc["input_ids"].numpy(), enc["attention_mask"].numpy(), timings)
    ok, lines = compare(ref, got, tol)
    log(f"verification, photo {photo.size[0]}x{photo.size[1]}, prompts {prompts}, "
        f"tolerance max|diff| <= {tol:g} * max(1, max|torch|):")
    for line in lines:
        print(line, flush=True)
    if bench > 0:
        timings = {}
        one = {k: v[:1].numpy() for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        for _ in range(bench):
            run_onnx(sessions, enc["pixel_values"].numpy(), one["input_ids"], one["attention_mask"], timings)
        log(f"ONNX Runtime CPU, {threads} threads, batch 1, one prompt, best of {bench}: " + ", ".join(
            f"{k} {min(v):.3f} s" for k, v in timings.items()))
    return ok


# --------------------------------------------------------------------------- int8 variants

# Static int8 calibrates on this many photos (MinMax ranges of the weight
# products' inputs): each is one run of the image encoder, 20-60 s at full size
# on 2 cores (engines/README.md, "Full-size check").
INT8_CALIBRATION = 8


def peak_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# Photos that ship with scikit-image (a pinned requirement), besides the test
# fixtures' pictures (quantize_bundle.DEFAULT_PHOTOS): no download.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def write_int8(out_dir: str, calibration: int) -> bool:
    """quantize_bundle.py's static and dynamic int8 variants with its default
    engines and checks, calibrated on photos that ship with scikit-image and
    the repository, no download."""
    import quantize_bundle
    import skimage.data

    data = os.path.dirname(skimage.data.__file__)
    photos = [os.path.join(data, p) for p in SKIMAGE_PHOTOS] + quantize_bundle.DEFAULT_PHOTOS
    argv = [out_dir, "--kinds", "static,dynamic", "--calibration", str(calibration), "--photos", *photos]
    log(f"int8 variants: quantize_bundle.py {out_dir} --kinds static,dynamic --calibration {calibration} "
        f"(photos: scikit-image's {', '.join(SKIMAGE_PHOTOS)} and {', '.join(quantize_bundle.DEFAULT_PHOTOS)})")
    return quantize_bundle.main(argv) == 0


# --------------------------------------------------------------------------- main


ENGINE_FILES = ("text_encoder.onnx", "image_encoder.onnx", "decoder.onnx")
TRACKER_FILES = tuple(f"{e}.onnx" for e in export_sam3_tracker.TRACKER_ENGINES)
BUNDLE_FILES = ("bundle.toml", "tokenizer.json") + ENGINE_FILES + TRACKER_FILES


def reset_bundle_dir(out_dir: str, subdirs: list[str]) -> None:
    """For fixture makers that own OUT_DIR: remove its bundle files, and empty (recreate) the
    given subdirectories, so the export never meets a stale bundle."""
    for f in BUNDLE_FILES:
        if os.path.exists(os.path.join(out_dir, f)):
            os.remove(os.path.join(out_dir, f))
    for d in subdirs:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)


def tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(path) for fn in fns)


def check_out_dir(out_dir: str, name: str, sha: str) -> None:
    manifest = os.path.join(out_dir, "bundle.toml")
    if os.path.isfile(manifest):
        try:
            with open(manifest, "rb") as f:
                old = tomllib.load(f).get("bundle", {})
        except Exception as e:
            raise Refused(f"{manifest} exists and cannot be read ({e}); refusing to overwrite it")
        if old.get("name") != name or old.get("source_sha256") != sha:
            raise Refused(
                f"{out_dir!r} already holds a different bundle (name {old.get('name')!r}, source_sha256 "
                f"{str(old.get('source_sha256'))[:12]}...; this export: name {name!r}, {sha[:12]}...). "
                "Use another OUT_DIR or remove the old bundle first."
            )
        log(f"overwriting bundle {name!r} (same name and checkpoint) in {out_dir}")
    elif os.path.isdir(out_dir):
        clash = [f for f in ENGINE_FILES if os.path.exists(os.path.join(out_dir, f))]
        if clash:
            raise Refused(f"{out_dir!r} holds engine files {clash} but no bundle.toml; refusing to overwrite them")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint_dir", help="transformers Sam3Model checkpoint directory (e.g. a download of facebook/sam3)")
    ap.add_argument("out_dir", help="bundle directory to write")
    ap.add_argument("--name", default=None, help="bundle name (default: the OUT_DIR's base name)")
    ap.add_argument("--licence", default="SAM License", help="licence of the weights, recorded in bundle.toml")
    ap.add_argument("--source", default=None, help="source_checkpoint recorded in bundle.toml (default: CHECKPOINT_DIR)")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="verification: max|onnx-torch| <= T * max(1, max|torch|) per output (default 1e-4)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime / torch CPU threads (default 2)")
    ap.add_argument("--bench", type=int, default=0, help="after verification, time N runs per engine (batch 1)")
    ap.add_argument("--no-verify", action="store_true", help="skip the PyTorch vs ONNX Runtime check")
    ap.add_argument("--tracker", action="store_true",
                    help="also export SAM 3's video tracker (needs a sam3_video checkpoint, e.g. facebook/sam3)")
    ap.add_argument("--no-int8", action="store_true",
                    help="write the fp32 engines only, not the int8 variants (engines/quantize_bundle.py)")
    ap.add_argument("--int8-calibration", type=int, default=INT8_CALIBRATION,
                    help=f"static int8: calibration photos, one image-encoder run each (default {INT8_CALIBRATION})")
    args = ap.parse_args(argv)
    if not args.no_int8:
        return export_then_int8(list(sys.argv[1:] if argv is None else argv), args)

    try:
        cfg_json, weight_files = read_checkpoint(args.checkpoint_dir)
        name = args.name or os.path.basename(os.path.normpath(args.out_dir))
        log(f"hashing {len(weight_files)} weight file(s)")
        sha = weights_sha256(weight_files)
        check_out_dir(args.out_dir, name, sha)
        if args.tracker and cfg_json.get("model_type") != "sam3_video":
            raise Refused(f"--tracker needs a sam3_video checkpoint (Sam3VideoModel); "
                          f"{args.checkpoint_dir} is {cfg_json.get('model_type')!r}")
    except Refused as e:
        print(f"export_sam3: error: {e}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    video_model = None
    if args.tracker:
        video_model = export_sam3_tracker.load_video_model(args.checkpoint_dir)
        model = video_model.detector_model
    else:
        model = load_model(args.checkpoint_dir)
    image_size = int(model.config.vision_config.backbone_config.image_size)
    processor = load_processor(args.checkpoint_dir, image_size)
    if int(processor.image_processor.size["height"]) != image_size:
        print(f"export_sam3: error: processor size {processor.image_processor.size} != model image_size {image_size}",
              file=sys.stderr)
        return 2
    log(f"loaded {args.checkpoint_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"image {image_size}) in {time.time() - t0:.0f} s")

    tok_path = os.path.join(args.out_dir, "tokenizer.json")
    write_tokenizer_json(args.checkpoint_dir, tok_path, processor.tokenizer)
    check_tokenizer(tok_path, processor)

    export_all(model, processor, args.out_dir, video_model)
    engines = ["text_encoder", "image_encoder", "decoder"]
    tracker_table = None
    if video_model is not None:
        export_sam3_tracker.export_tracker(video_model, args.out_dir, log)
        engines += list(export_sam3_tracker.TRACKER_ENGINES)
        tracker_table = export_sam3_tracker.tracker_table(video_model)
    signatures = {e: onnx_signature(os.path.join(args.out_dir, f"{e}.onnx")) for e in engines}
    check_signatures(signatures, model.config, image_size)
    path = write_manifest(
        args.out_dir, name=name, source=args.source or args.checkpoint_dir, sha=sha, licence=args.licence,
        processor=processor, model_cfg=model.config, signatures=signatures, tracker=tracker_table,
    )
    log(f"wrote {path} (fp32 engines) in {time.time() - t0:.0f} s (peak RSS {peak_gb():.1f} GB)")
    if not args.no_verify:
        if not verify(model, processor, args.out_dir, args.tolerance, args.threads, args.bench):
            print("export_sam3: error: ONNX outputs differ from PyTorch beyond the tolerance", file=sys.stderr)
            return 3
        if video_model is not None:
            ok = export_sam3_tracker.verify_video_image_encoder(video_model, processor, verification_photo(),
                                                                args.out_dir, args.threads,
                                                                args.tolerance, log)
            ok &= export_sam3_tracker.verify_tracker(video_model, args.out_dir, args.threads, args.tolerance, log)[0]
            if not ok:
                print("export_sam3: error: tracker ONNX outputs differ from PyTorch beyond the tolerance",
                      file=sys.stderr)
                return 3
        log(f"verification passed ({time.time() - t0:.0f} s so far, peak RSS {peak_gb():.1f} GB)")
    return 0


def export_then_int8(argv: list[str], args) -> int:
    """The fp32 export and its verification in a child process (this script
    with ``--no-int8``), then the int8 variants here: nothing that PyTorch and
    the verification's sessions left allocated (7.3 GB still resident at full
    size after the model was dropped) is there while the quantisation runs, and
    the two peaks do not add up."""
    import subprocess

    t0 = time.time()
    rc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--no-int8"]).returncode
    if rc != 0:
        return rc
    t1 = time.time()
    log(f"fp32 bundle exported and verified in {t1 - t0:.0f} s")
    if not write_int8(args.out_dir, args.int8_calibration):
        print("export_sam3: error: an int8 variant is outside quantize_bundle.py's tolerances; the fp32 bundle is "
              "written and verified, without int8 variants (rerun with --no-int8 to skip them)", file=sys.stderr)
        return 4
    log(f"int8 variants written and checked in {time.time() - t1:.0f} s (peak RSS {peak_gb():.1f} GB); "
        f"whole export {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
