"""`gpux serve` speaks the clients' protocols: the real huggingface_hub InferenceClient and the real openai
package against a real server on 127.0.0.1, one model of each task the test Hub's tiny models cover."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gpuxbuild.runtime import load
from gpuxbuild.runtime.hfapi import answer, parse_request

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
hub_inference = pytest.importorskip("huggingface_hub.inference._client")
openai = pytest.importorskip("openai")

from serving import serving  # noqa: E402

KINDS = ("bert", "bert-ner", "bert-mlm", "bert-qa", "sentence-transformers", "gpt2", "t5-peaky", "deberta-v2")
# Copies of t5-peaky whose config.json says what it was fine-tuned for, as summarization and translation
# models' configs do (bart-large-cnn's task_specific_params, opus-mt's MarianMTModel).
TEXT2TEXT_COPIES = {
    "t5-summarize": {"task_specific_params": {"summarization": {"max_length": 20}}},
    "t5-translate": {"task_specific_params": {"translation_en_to_de": {"max_length": 20}}},
}
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def models(artifacts, tmp_path_factory):
    """Every kind served by one process; gpt2 also as "gpt2-chat", a copy whose tokenizer has a chat template."""
    folders = {kind: artifacts(kind).artifact for kind in KINDS}
    chat = tmp_path_factory.mktemp("chat") / "gpt2-chat"
    shutil.copytree(folders["gpt2"], chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    (chat / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
    folders["gpt2-chat"] = chat
    for name, extra in TEXT2TEXT_COPIES.items():
        copy = tmp_path_factory.mktemp(name) / name
        shutil.copytree(folders["t5-peaky"], copy)
        (copy / "config.json").chmod(0o644)
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, **extra}))
        folders[name] = copy
    with serving(folders) as (base, _):
        yield base, folders


def _client(base: str, name: str):
    return hub_inference.InferenceClient(model=f"{base}/models/{name}")


def _expected(folder, payload: dict):
    """What the Inference API answer must be: the library's prediction in the API's shape."""
    model = load(folder)
    request = parse_request(payload, model.task)
    return answer(model.predict(request.inputs, **request.options), request, model.task, model.raw_task, model.config)


def test_text_classification(models):
    base, folders = models
    got = _client(base, "bert").text_classification("paris is in france")
    want = _expected(folders["bert"], {"inputs": "paris is in france"})
    assert len(want) == 1 and len(want[0]) == 2  # [[{label, score}, ...]]: every label, likeliest first
    assert [(x.label, x.score) for x in got] == [(x["label"], pytest.approx(x["score"], abs=1e-5)) for x in want[0]]


def test_token_classification(models):
    base, folders = models
    text = "john smith works at acme corporation in new york"
    got = _client(base, "bert-ner").token_classification(text)
    want = _expected(folders["bert-ner"], {"inputs": text})
    assert [(e.entity_group, e.word, e.start, e.end) for e in got] == [
        (e["entity_group"], e["word"], e["start"], e["end"]) for e in want
    ]


def test_fill_mask(models):
    base, folders = models
    got = _client(base, "bert-mlm").fill_mask("paris is in [MASK]", top_k=3)
    want = _expected(folders["bert-mlm"], {"inputs": "paris is in [MASK]", "parameters": {"top_k": 3}})
    assert len(got) == 3
    assert [(c.token, c.token_str, c.sequence) for c in got] == [
        (c["token"], c["token_str"], c["sequence"]) for c in want
    ]


def test_question_answering(models):
    base, folders = models
    question, context = "what is the capital of france?", "it is paris. berlin is in germany"
    got = _client(base, "bert-qa").question_answering(question=question, context=context)
    want = _expected(folders["bert-qa"], {"inputs": {"question": question, "context": context}})
    assert (got.answer, got.start, got.end) == (want["answer"], want["start"], want["end"])
    assert context[got.start : got.end] == got.answer


def test_feature_extraction_and_sentence_similarity(models):
    base, folders = models
    client = _client(base, "sentence-transformers")
    got = client.feature_extraction("hello world")
    model = load(folders["sentence-transformers"])
    want = model.embed(["hello world"])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)
    scores = client.sentence_similarity("hello world", other_sentences=["hello world", "onnx runtime"])
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and len(scores) == 2


def test_text_generation(models):
    base, folders = models
    client = _client(base, "gpt2")
    out = load(folders["gpt2"]).predict({"text": "hello", "max_new_tokens": 5})
    assert client.text_generation("hello", max_new_tokens=5) == out["generated_text"]
    assert client.text_generation("hello", max_new_tokens=5, return_full_text=False) == out["completion"]


def test_text2text_generation(models):
    base, folders = models
    got = _client(base, "t5-peaky").summarization("the quick brown fox")
    out = load(folders["t5-peaky"]).predict({"text": "the quick brown fox"})
    response = httpx.post(f"{base}/models/t5-peaky", json={"inputs": "the quick brown fox"}).json()
    assert response == [{"generated_text": out["generated_text"]}]
    # A text2text artifact answers generated_text (summary_text is for artifacts built for summarization),
    # which the client's summarization() keeps as an extra field, as it does with the Inference API.
    assert got.generated_text == out["generated_text"]


@pytest.mark.parametrize(("name", "key"), [("t5-summarize", "summary_text"), ("t5-translate", "translation_text")])
def test_summarization_and_translation(models, name, key):
    base, folders = models
    text = "the quick brown fox"
    out = load(folders[name]).predict({"text": text})
    assert out["generated_text"]
    response = httpx.post(f"{base}/models/{name}", json={"inputs": text}).json()
    assert response == [{key: out["generated_text"]}]  # [{summary_text}] / [{translation_text}]
    client = _client(base, name)
    if key == "summary_text":
        assert client.summarization(text).summary_text == out["generated_text"]
    else:
        assert client.translation(text).translation_text == out["generated_text"]


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_classification_matches_the_pipeline(models, artifacts, multi_label):
    """An NLI model (labels entailment/neutral/contradiction) answers the Inference API's zero-shot shape,
    {sequence, labels, scores}, with the scores of transformers' zero-shot-classification pipeline."""
    from transformers import pipeline

    base, _ = models
    text, labels = "john smith works at acme corporation in new york", ["travel", "work", "sports"]
    got = _client(base, "deberta-v2").zero_shot_classification(text, labels, multi_label=multi_label)
    reference = pipeline("zero-shot-classification", model=str(artifacts("deberta-v2").source))
    want = reference(text, candidate_labels=labels, multi_label=multi_label)
    assert [x.label for x in got] == want["labels"]
    assert [x.score for x in got] == pytest.approx(want["scores"], abs=1e-5)
    if multi_label:
        assert sum(want["scores"]) != pytest.approx(1.0, abs=1e-3)  # per label, not over the labels
    template = "It is about {}."
    raw = httpx.post(
        f"{base}/models/deberta-v2",
        json={"inputs": text, "parameters": {"candidate_labels": "travel, work", "hypothesis_template": template}},
    ).json()
    want = reference(text, candidate_labels="travel, work", hypothesis_template=template)
    assert set(raw) == {"sequence", "labels", "scores"} and raw["sequence"] == text
    assert raw["labels"] == want["labels"] and raw["scores"] == pytest.approx(want["scores"], abs=1e-5)
    # A model without an entailment label cannot do it; other tasks refuse the parameter.
    r = httpx.post(f"{base}/models/bert", json={"inputs": text, "parameters": {"candidate_labels": labels}})
    assert r.status_code == 422 and "entailment" in r.json()["error"]
    r = httpx.post(f"{base}/models/gpt2", json={"inputs": text, "parameters": {"candidate_labels": labels}})
    assert r.status_code == 400 and "candidate_labels" in r.json()["error"]
    r = httpx.post(f"{base}/models/deberta-v2", json={"inputs": text, "parameters": {"candidate_labels": ["a"] * 40}})
    assert r.status_code == 413  # a row per label: 40 rows are over the batch limit


def test_hf_errors_are_the_apis_shape(models):
    base, _ = models
    r = httpx.post(f"{base}/models/bert", json={"inputs": "a", "parameters": {"watermark": True}})
    assert r.status_code == 400
    assert r.json()["error"].startswith("The following `model_kwargs` are not used by the model: ['watermark']")
    r = httpx.post(f"{base}/models/nope", json={"inputs": "a"})
    assert r.status_code == 404 and "no model 'nope'" in r.json()["error"]
    assert httpx.get(f"{base}/models/nope/info").status_code == 404
    assert httpx.get(f"{base}/models/bert/info").json()["task"] == "text-classification"
    r = httpx.post(f"{base}/", json={"inputs": "a"})
    assert r.status_code == 400 and "serves 11 models: say which" in r.json()["error"]
    r = httpx.post(f"{base}/", json={"inputs": "a", "model": "bert"})
    assert r.status_code == 200 and r.json()[0][0]["label"]


def _openai(base: str):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def test_openai_models_and_embeddings(models):
    base, folders = models
    client = _openai(base)
    listed = {m.id for m in client.models.list()}
    assert listed == set(folders)
    result = client.embeddings.create(model="sentence-transformers", input=["hello world", "onnx runtime"])
    want = load(folders["sentence-transformers"]).embed(["hello world", "onnx runtime"])
    assert np.allclose([d.embedding for d in result.data], want, atol=1e-5)
    assert result.usage.prompt_tokens > 0
    as_floats = client.embeddings.create(model="sentence-transformers", input="hello world", encoding_format="float")
    assert np.allclose(as_floats.data[0].embedding, want[0], atol=1e-5)


def test_openai_completions(models):
    base, folders = models
    client = _openai(base)
    out = load(folders["gpt2"]).predict({"text": "hello", "max_new_tokens": 6})
    got = client.completions.create(model="gpt2", prompt="hello", max_tokens=6, temperature=0)
    assert got.choices[0].text == out["completion"]
    assert got.choices[0].finish_reason == ("length" if out["finish_reason"] == "length" else "stop")
    assert got.usage.completion_tokens == len(out["token_ids"]) and got.usage.prompt_tokens >= 1
    sampled = [
        client.completions.create(model="gpt2", prompt="hello", max_tokens=6, temperature=1.2, top_p=0.9, seed=7)
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]  # seeded


def test_openai_completion_stop_and_stream(models):
    base, folders = models
    client = _openai(base)
    full = load(folders["gpt2"]).predict({"text": "hello", "max_new_tokens": 12})["completion"]
    stop = full[3:5]
    assert stop and stop in full
    got = client.completions.create(model="gpt2", prompt="hello", max_tokens=12, temperature=0, stop=[stop])
    assert got.choices[0].text == full[: full.index(stop)] and got.choices[0].finish_reason == "stop"

    chunks = list(client.completions.create(model="gpt2", prompt="hello", max_tokens=12, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    with httpx.stream(
        "POST", f"{base}/v1/completions", json={"model": "gpt2", "prompt": "hello", "max_tokens": 3, "stream": True}
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_openai_chat(models):
    base, folders = models
    client = _openai(base)
    messages = [{"role": "user", "content": "hello"}]
    prompt = "user: hello\nassistant:"
    out = load(folders["gpt2-chat"]).predict({"text": prompt, "max_new_tokens": 5})
    got = client.chat.completions.create(model="gpt2-chat", messages=messages, max_tokens=5, temperature=0)
    assert got.choices[0].message.content == out["completion"] and got.choices[0].message.role == "assistant"
    assert got.usage.completion_tokens == len(out["token_ids"])
    stream = client.chat.completions.create(
        model="gpt2-chat",
        messages=messages,
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == out["completion"]
    assert chunks[-1].usage.completion_tokens == len(out["token_ids"])

    with pytest.raises(openai.BadRequestError, match="has no chat template"):
        client.chat.completions.create(model="gpt2", messages=messages)


def test_openai_errors_are_openais_shape(models):
    base, _ = models
    client = _openai(base)
    with pytest.raises(openai.BadRequestError, match="is a text-classification model"):
        client.embeddings.create(model="bert", input="a")
    with pytest.raises(openai.NotFoundError, match="no model 'nope'"):
        client.completions.create(model="nope", prompt="a")
    r = httpx.post(f"{base}/v1/completions", content=b"not json")
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not JSON"
    r = httpx.post(f"{base}/v1/completions", json={"model": "gpt2", "prompt": "a", "n": 3})
    assert r.status_code == 400 and "n=3 is not supported" in r.json()["error"]["message"]
    r = httpx.get(f"{base}/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"
