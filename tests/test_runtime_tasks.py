"""Runtime outputs vs transformers pipelines / PyTorch on the same tiny models and inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime import load

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TEXTS = ["john smith works at acme corporation in new york", "hello world, paris is in france"]


def _pipe(task: str, built, **kwargs):
    model_cls = {
        "text-classification": transformers.AutoModelForSequenceClassification,
        "fill-mask": transformers.AutoModelForMaskedLM,
        "token-classification": transformers.AutoModelForTokenClassification,
        "question-answering": transformers.AutoModelForQuestionAnswering,
    }[task]
    model = model_cls.from_pretrained(built.source).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(built.source)
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, device="cpu", **kwargs)


def _json_roundtrip(value):
    assert json.loads(json.dumps(value)) == value
    return value


@pytest.mark.parametrize("kind", ["bert", "bert-multilabel", "distilbert", "roberta"])
def test_text_classification_matches_pipeline(artifacts, kind):
    built = artifacts(kind)
    model = load(built.artifact)
    ours = _json_roundtrip(model.predict({"text": TEXTS}))["results"]
    theirs = _pipe("text-classification", built, top_k=None)(TEXTS)
    for mine, ref in zip(ours, theirs, strict=True):
        assert [x["label"] for x in mine["labels"]] == [x["label"] for x in ref]
        np.testing.assert_allclose([x["score"] for x in mine["labels"]], [x["score"] for x in ref], atol=1e-4)
        assert mine["label"] == ref[0]["label"]
    if kind == "bert-multilabel":  # sigmoid: independent scores
        assert abs(sum(x["score"] for x in ours[0]["labels"]) - 1.0) > 1e-3


def test_fill_mask_matches_pipeline(artifacts):
    built = artifacts("bert-mlm")
    model = load(built.artifact)
    text = "paris is in [MASK], berlin is in germany."
    ours = _json_roundtrip(model.predict({"text": text, "top_k": 3}))["masks"][0]
    theirs = _pipe("fill-mask", built, top_k=3)(text)
    assert [(x["token"], x["token_str"], x["sequence"]) for x in ours] == [
        (x["token"], x["token_str"], x["sequence"]) for x in theirs
    ]
    np.testing.assert_allclose([x["score"] for x in ours], [x["score"] for x in theirs], atol=1e-4)


def test_fill_mask_without_mask_is_a_user_error(artifacts):
    model = load(artifacts("bert-mlm").artifact)
    with pytest.raises(GpuxError, match=r"\[MASK\]"):
        model.predict({"text": "no mask here"})


@pytest.mark.parametrize("strategy", ["simple", "none"])
def test_token_classification_matches_pipeline(artifacts, strategy):
    built = artifacts("bert-ner")
    model = load(built.artifact)
    ours = _json_roundtrip(model.predict({"text": TEXTS, "aggregation_strategy": strategy}))["results"]
    theirs = _pipe("token-classification", built, aggregation_strategy=strategy)(TEXTS)
    key = "entity_group" if strategy == "simple" else "entity"
    for mine, ref in zip(ours, theirs, strict=True):
        assert len(mine["entities"]) == len(ref) > 0
        for a, b in zip(mine["entities"], ref, strict=True):
            assert (a[key], a["word"], a["start"], a["end"]) == (b[key], b["word"], b["start"], b["end"])
            assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)


def test_question_answering_matches_pipeline(artifacts):
    built = artifacts("bert-qa")
    model = load(built.artifact)
    question, context = "where does john smith work?", "john smith works at acme corporation in new york"
    ours = _json_roundtrip(model.predict({"question": question, "context": context}))
    theirs = _pipe("question-answering", built)(question=question, context=context)
    assert (ours["answer"], ours["start"], ours["end"]) == (theirs["answer"], theirs["start"], theirs["end"])
    assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)
    assert context[ours["start"] : ours["end"]] == ours["answer"]


def _st_reference(source, texts):
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    model = transformers.AutoModel.from_pretrained(source).eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_sentence_embeddings_match_pytorch(artifacts):
    built = artifacts("sentence-transformers")
    model = load(built.artifact)
    texts = ["hello world", "the quick brown fox jumps over the lazy dog"]
    ours = np.array([r["embedding"] for r in model.predict({"text": texts})["results"]])
    ref = _st_reference(built.source, texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    sim = model.similarity(*texts)
    assert sim == pytest.approx(float(ref[0] @ ref[1]), abs=1e-5)
    assert model.predict({"text": texts[0], "text_pair": texts[1]})["similarity"] == pytest.approx(sim)


def test_similarity_needs_feature_extraction(artifacts):
    model = load(artifacts("bert").artifact)
    with pytest.raises(GpuxError, match="feature-extraction"):
        model.similarity("a", "b")


def _reference_generate(built, prompt_ids, n):
    model = (
        transformers.AutoModelForSeq2SeqLM
        if built.artifact.joinpath("encoder_model.onnx").exists()
        else transformers.AutoModelForCausalLM
    )
    model = model.from_pretrained(built.source).eval()
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
        )
    tokens = out[0].tolist()
    if model.config.is_encoder_decoder:
        return tokens[1:]  # drop the decoder start token
    return tokens[len(prompt_ids) :]


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2", "t5", "bart", "t5-peaky", "bart-peaky"])
def test_greedy_generation_equals_transformers(artifacts, kind):
    built = artifacts(kind)
    model = load(built.artifact)
    for prompt in ("hello world", "Paris is the capital of France"):
        ours = _json_roundtrip(model.predict({"text": prompt, "max_new_tokens": 12}))
        prompt_ids = [int(i) for i in model.tokenizer.encode([prompt], pad=False).arrays["input_ids"][0]]
        ref = _reference_generate(built, prompt_ids, 12)
        assert ours["token_ids"] == ref, (kind, prompt)
        assert ours["finish_reason"] == ("eos" if ref[-1] in _eos_ids(model) else "length")
        if kind.endswith("-peaky"):  # these exercise the KV cache over many distinct steps
            assert len(set(ref)) >= 3


def _eos_ids(model):
    eos = model.generation_config.get("eos_token_id", model.config.get("eos_token_id"))
    return eos if isinstance(eos, list) else [eos]


def test_generation_stops_at_eos_and_streams(artifacts):
    model = load(artifacts("gpt2").artifact)
    free = model.predict({"text": "hello", "max_new_tokens": 8})["token_ids"]
    # Make the third greedy token an end-of-sequence token: decoding must stop right there.
    model.generation_config = {**model.generation_config, "eos_token_id": [free[2]]}
    pieces = []
    out = model.predict({"text": "hello", "max_new_tokens": 8}, on_token=lambda tid, text: pieces.append((tid, text)))
    assert out["token_ids"] == free[: free.index(free[2]) + 1]
    assert out["finish_reason"] == "eos"
    assert [tid for tid, _ in pieces] == out["token_ids"]
    assert "".join(text for _, text in pieces) == out["completion"]
    assert out["generated_text"] == "hello" + out["completion"]


def test_sampling_is_seeded(artifacts):
    model = load(artifacts("llama").artifact)
    args = {"text": "hello world", "max_new_tokens": 10, "do_sample": True, "temperature": 1.5, "top_p": 0.95}
    a = model.predict({**args, "seed": 1})["token_ids"]
    assert a == model.predict({**args, "seed": 1})["token_ids"]
    others = [model.predict({**args, "seed": s})["token_ids"] for s in range(2, 6)]
    assert any(o != a for o in others)
    greedy = model.predict({"text": "hello world", "max_new_tokens": 10})["token_ids"]
    assert model.predict({**args, "top_k": 1, "seed": 3})["token_ids"] == greedy


def test_seq2seq_batch_and_sampling(artifacts):
    model = load(artifacts("t5-peaky").artifact)
    out = model.predict({"text": ["hello world", "paris is in france"], "max_new_tokens": 4})
    assert len(out["results"]) == 2
    sampled = model.predict({"text": "hello", "max_new_tokens": 6, "seed": 0, "temperature": 2.0})
    assert sampled == model.predict({"text": "hello", "max_new_tokens": 6, "seed": 0, "temperature": 2.0})
