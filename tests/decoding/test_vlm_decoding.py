"""VIN-constrained generation for the VLM families (vin_ocr.decoding.vlm), offline.

Multi-character tokens are tested with BPE tokenizers trained here on random VINs (byte-level
``Ġ`` and SentencePiece ``▁`` styles) and a tiny random Llama; the families with their own tiny
random models and character tokenizers.
"""

from __future__ import annotations

import random

import pytest
import torch

from vin_ocr.decoding.vlm import (
    Candidate,
    VinLogitsProcessor,
    VinTokens,
    VlmDecoding,
    choose,
    generate_candidates,
    token_logprobs,
)
from vin_ocr.models.tiny import text_image
from vin_ocr.models.vlm import settings_from, to_model
from vin_ocr.vin import (
    ALPHABET,
    VIN_LENGTH,
    YEAR_CODES,
    check_digit,
    check_digit_mandatory,
    check_digit_ok,
    random_vin,
)

PROMPTS = ["VIN?", "What is the VIN in this image? Answer with the 17 characters only."]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def bpe_tokenizer(style: str) -> object:
    """A BPE tokenizer trained on random VINs and prompts: multi-character VIN tokens, with the
    space marker of GPT-style (``Ġ``, byte level) or SentencePiece-style (``▁``) vocabularies."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [f"VIN {random_vin(rng)} {random_vin(rng)}" for _ in range(1500)] + PROMPTS * 50
    core = Tokenizer(models.BPE())
    if style == "byte":
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        core.pre_tokenizer = pre_tokenizers.Metaspace()
        core.decoder = decoders.Metaspace()
        alphabet = list({ch for line in corpus for ch in line} | {"▁"})
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<pad>", "<eos>"], initial_alphabet=alphabet
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture(scope="module", params=["byte", "sentencepiece"])
def tokenizer(request: pytest.FixtureRequest) -> object:
    return bpe_tokenizer(request.param)


def tiny_llama(tokenizer: object) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def follows_rules(text: str) -> bool:
    """17 VIN characters; where the check digit is mandatory, 0-9/X in position 9 and a
    model-year code in position 10."""
    if len(text) != VIN_LENGTH or not set(text) <= set(ALPHABET):
        return False
    if check_digit_mandatory(text):
        return text[8] in "0123456789X" and text[9] in YEAR_CODES
    return True


# -- the vocabulary table ---------------------------------------------------------------------


def test_vocabulary_table_handles_multi_character_tokens_and_space_markers(tokenizer):
    tokens = VinTokens(tokenizer)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    multi = {i: c for i, c in tokens.pieces.items() if len(c) > 1}
    assert len(multi) > 50, "the trained vocabulary should hold multi-character VIN tokens"
    spaced = [i for i in tokens.pieces if vocab[i][0] in "Ġ▁"]
    assert spaced, "some VIN tokens carry the leading-space marker"
    for i, chars in tokens.pieces.items():
        assert set(chars) <= set(ALPHABET) and int(tokens.length[i]) == len(chars)
        assert tokenizer.decode([i]).strip() == chars
        starts = tokens.allowed[:VIN_LENGTH, 0, i].nonzero().flatten().tolist()
        if i in spaced:  # a leading space only before the first character
            assert starts == [0]
        else:  # (loose rules) anywhere the token fits in 17 characters
            assert starts == list(range(VIN_LENGTH - len(chars) + 1))
    # Everything else: lower case, I/O/Q, punctuation, specials is never allowed.
    never = set(range(len(tokenizer))) - set(tokens.pieces) - set(tokens.eos_ids)
    assert not tokens.allowed[:, :, sorted(never)].any()
    assert tokens.allowed[VIN_LENGTH].nonzero()[:, 1].unique().tolist() == tokens.eos_ids
    # Mandatory region: after "1M8GDM9A" only 0-9/X may come, and position 10 is a year code.
    for i, chars in tokens.pieces.items():
        expected = (
            i not in spaced
            and len(chars) <= VIN_LENGTH - 8
            and chars[0] in "0123456789X"
            and (len(chars) < 2 or chars[1] in YEAR_CODES)
        )
        assert bool(tokens.allowed[8, 1, i]) == expected, chars


def allowed_next(tokens: VinTokens, prefix: list[int]) -> set[str]:
    """The single VIN characters the processor allows after the answer tokens ``prefix``."""
    singles = {i: c for i, c in tokens.pieces.items() if len(c) == 1 and tokens.allowed[1, 0, i]}
    processor = VinLogitsProcessor(tokens, prompt_length=1)
    input_ids = torch.tensor([[tokens.eos_ids[0], *prefix]])
    out = processor(input_ids, torch.zeros(1, int(tokens.length.shape[0])))
    return {c for i, c in singles.items() if out[0, i] > float("-inf")}


def test_the_region_comes_from_the_wmi_new_zealand_7a_7e_free_us_7f_7z_strict(tokenizer):
    tokens = VinTokens(tokenizer)
    one = {c: i for i, c in tokens.pieces.items() if len(c) == 1 and tokens.allowed[1, 0, i]}

    def spell(text: str) -> list[int]:
        return [one[c] for c in text]

    check = set("0123456789X")
    for wmi in ("7A", "7B", "7E"):  # New Zealand: position 9 and 10 are free
        assert check_digit_mandatory(wmi + "3CL1234A1000001") is False
        assert allowed_next(tokens, spell(wmi + "3CL123")) == set(ALPHABET)
        assert "U" in allowed_next(tokens, spell(wmi + "3CL1234"))
    for wmi in ("7F", "7S", "70", "1H", "LS", "HJ"):  # United States, China: the rules hold
        assert allowed_next(tokens, spell(wmi + "3CL123")) == check
        assert allowed_next(tokens, spell(wmi + "3CL1234")) == set(YEAR_CODES)
    assert allowed_next(tokens, spell("WV3CL123")) == set(ALPHABET)
    # A first token that spells two or more characters decides the same way.
    for i, chars in tokens.pieces.items():
        if 2 <= len(chars) <= 8 and tokens.allowed[0, 0, i]:
            nxt = allowed_next(tokens, [i, *spell("0" * (8 - len(chars)))])
            assert nxt == (check if check_digit_mandatory(chars) else set(ALPHABET)), chars


def test_a_tokenizer_without_every_vin_character_is_refused():
    from vin_ocr.models.tiny import char_tokenizer

    tok = char_tokenizer(["<pad>", "<eos>"], bos=None, eos="<eos>", pad="<pad>")
    VinTokens(tok)  # every printable character: fine
    with pytest.raises(ValueError, match="needs an end token"):
        VinTokens(tok, eos_token_id=[])


# -- generation with the processor ------------------------------------------------------------


def sample_answers(model, tokenizer, processor: bool, n: int = 24) -> tuple[list[list[int]], int]:
    """Sample ``n`` answers per prompt (left-padded batch of prompts of different lengths)."""
    tokenizer.padding_side = "left"
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    width = inputs["input_ids"].shape[1]
    extra = {"logits_processor": [VinLogitsProcessor(tokenizer, width)]} if processor else {}
    torch.manual_seed(1)
    out = model.generate(
        **inputs,
        do_sample=True,
        num_return_sequences=n,
        max_new_tokens=VIN_LENGTH + 1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )
    return out[:, width:].tolist(), width


def test_every_constrained_answer_is_a_vin_and_stops_at_17_characters(tokenizer):
    model = tiny_llama(tokenizer)
    answers, _ = sample_answers(model, tokenizer, processor=True)
    eos = tokenizer.eos_token_id
    texts, used = [], []
    for ids in answers:
        assert eos in ids, "every answer ends with the end token"
        end = ids.index(eos)
        text = tokenizer.decode(ids[:end]).strip()
        texts.append(text)
        used.append(end)
        assert follows_rules(text), text
        # No token is wasted: the answer is its VIN tokens and one end token, then padding.
        assert set(ids[end + 1 :]) <= {tokenizer.pad_token_id}
        assert end + 1 <= VIN_LENGTH + 1
    assert min(used) < VIN_LENGTH, "multi-character tokens were generated"
    assert any(check_digit_mandatory(t) for t in texts), "the strict rules were exercised"
    assert any(not check_digit_mandatory(t) for t in texts)


def test_without_the_processor_the_random_model_writes_no_vin(tokenizer):
    model = tiny_llama(tokenizer)
    answers, _ = sample_answers(model, tokenizer, processor=False)
    texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]
    assert not any(follows_rules(t) for t in texts), texts


def test_beam_search_keeps_the_rules_and_the_scores_add_up(tokenizer):
    model = tiny_llama(tokenizer)
    tokenizer.padding_side = "left"
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    decoding = VlmDecoding(num_beams=4)
    candidates = generate_candidates(model, tokenizer, inputs, decoding)
    assert [len(c) for c in candidates] == [4, 4]
    reference = model.generate(
        **inputs,
        num_beams=4,
        num_return_sequences=4,
        length_penalty=0.0,
        early_stopping=True,
        max_new_tokens=VIN_LENGTH + 1,
        logits_processor=[VinLogitsProcessor(tokenizer, inputs["input_ids"].shape[1])],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        output_scores=True,
        return_dict_in_generate=True,
    )
    flat = [c for per_prompt in candidates for c in per_prompt]
    # Same beams, same order; each score is the answer's log-probability (length_penalty 0).
    assert [c.logprob for c in flat] == pytest.approx(reference.sequences_scores.tolist(), abs=1e-4)
    width = inputs["input_ids"].shape[1]
    logp = token_logprobs(reference.scores, reference.sequences[:, width:], reference.beam_indices)
    expected = model.compute_transition_scores(
        reference.sequences, reference.scores, reference.beam_indices, normalize_logits=True
    )
    assert torch.allclose(logp[:, : expected.shape[1]], expected, atol=1e-5)
    for per_prompt in candidates:
        scores = [c.logprob for c in per_prompt]
        assert scores == sorted(scores, reverse=True)
        for c in per_prompt:
            assert follows_rules(c.text)
            assert len(c.char_conf) == VIN_LENGTH and all(0 < p <= 1 for p in c.char_conf)


# -- the check-digit search -------------------------------------------------------------------


def test_choose_returns_the_most_probable_candidate_with_a_valid_check_digit():
    rng = random.Random(3)
    for _ in range(200):
        base = random_vin(rng, rng.choice(["north_america", "china"]))
        pos = rng.choice([p for p in range(VIN_LENGTH) if p not in (0, 8)])
        alternatives = {base[:pos] + ch + base[pos + 1 :] for ch in ALPHABET}
        cands = sorted(
            (Candidate(v, -rng.random() * 5, (0.5,) * VIN_LENGTH) for v in alternatives),
            key=lambda c: -c.logprob,
        )
        reading = choose(cands)
        top = cands[0].text
        if check_digit_ok(top):
            assert reading.text == top and reading.unconstrained is None
            continue
        # Brute force: the highest log-probability among those whose check digit holds.
        valid = [c for c in cands if check_digit(c.text) == c.text[8]]
        assert reading.text == max(valid, key=lambda c: c.logprob).text
        assert reading.unconstrained == top and reading.repaired and reading.check_digit_ok


def test_choose_never_forces_an_optional_check_digit_and_keeps_what_it_cannot_fix():
    europe = [
        Candidate("WVWZZZ1JZXW000001", -1.0, (0.9,) * 17),
        Candidate("WVWZZZ1J3XW000001", -2.0, (0.9,) * 17),
    ]
    assert not check_digit_ok(europe[0].text)
    assert choose(europe).text == europe[0].text and choose(europe).unconstrained is None
    hopeless = [Candidate("1M8GDM9A3KP042788", -1.0, (0.9,) * 17)]
    reading = choose(hopeless)
    assert (reading.text, reading.unconstrained, reading.repaired) == (
        hopeless[0].text,
        hopeless[0].text,
        False,
    )
    assert choose(hopeless, search=False).unconstrained is None
    # A replacement stays in the region read: a European VIN is never the way out.
    to_europe = [*hopeless, Candidate("WM8GDM9A6KP042788", -2.0, (0.9,) * 17)]
    assert check_digit_ok(to_europe[1].text)
    assert choose(to_europe).text == hopeless[0].text
    assert choose([]).text == ""


# -- the two VLM families ---------------------------------------------------------------------


def families() -> list[tuple[str, dict]]:
    return [
        ("lfm2_vl", {"tiny": True, "min_image_tokens": 4, "max_image_tokens": 16}),
        ("deepseek_ocr2", {"tiny": True}),
    ]


@pytest.fixture(scope="module", params=families(), ids=lambda p: p[0])
def family_model(request: pytest.FixtureRequest):
    from vin_ocr.models.registry import get_family

    name, cfg = request.param
    family = get_family(name, cfg)
    torch.manual_seed(0)
    model, _ = family.build(cfg)
    return family, model, cfg


IMAGES = [
    text_image("1HGCM82633A004352"),
    text_image("WVWZZZ1JZXW000001", size=(256, 48)),  # another image-token count: left padding
    text_image("LSGJA52U26S012345", inverted=True),
]


def test_family_read_gives_vins_with_confidences(family_model):
    family, model, _ = family_model
    family.settings.decoding = {}  # defaults: constrained, check-digit search, 4 beams
    readings = family.read(model, IMAGES, [True, True, False])
    assert len(readings) == 3
    for r in readings:
        assert follows_rules(r.text), r
        assert r.char_conf is not None and all(0 < p <= 1 for p in r.char_conf)
        if r.unconstrained is not None:  # the search ran: mandatory region, failed check digit
            assert check_digit_mandatory(r.unconstrained) and not check_digit_ok(r.unconstrained)
    assert family.predict(model, IMAGES) == [r.text for r in readings]
    # Unconstrained greedy decoding of the same random model reads no VIN at all.
    family.settings.decoding = {"constrained": False, "check_digit_search": False, "num_beams": 1}
    assert not any(follows_rules(t) for t in family.predict(model, IMAGES))


def test_family_check_digit_search_picks_from_the_n_best_list(family_model):
    family, model, _ = family_model
    tok = family.processor.tokenizer
    inputs = to_model(family._prompts(IMAGES), model)
    # Start the answers with "1" (North America: the check digit is mandatory): bias "1" right
    # after the prompt's last token only.
    start = (int(inputs["input_ids"][0, -1]), tok.convert_tokens_to_ids("1"))
    family.settings.decoding = {"num_beams": 6, "generation": {"sequence_bias": {start: 9.0}}}
    decoding = family.decoding()
    candidates = generate_candidates(model, tok, inputs, decoding)
    readings = family.read(model, IMAGES)
    assert readings == [choose(c) for c in candidates]
    searched = [r for r in readings if r.unconstrained is not None]
    assert searched, [c[0].text for c in candidates]
    for r, cands in zip(readings, candidates, strict=True):
        assert r.unconstrained in (None, cands[0].text)
        if r.repaired:
            assert check_digit_ok(r.text) and r.text in [c.text for c in cands]


def test_constrained_generation_spends_at_most_18_tokens(family_model):
    family, model, _ = family_model
    family.settings.decoding = {"check_digit_search": False, "num_beams": 1}
    tok = family.processor.tokenizer
    inputs = to_model(family._prompts(IMAGES), model)
    from vin_ocr.decoding.vlm import eos_ids, generation_kwargs

    ends = eos_ids(model, tok)
    processor = VinLogitsProcessor(VinTokens(tok, ends), inputs["input_ids"].shape[1])
    kwargs = generation_kwargs(family.decoding(), tok, ends, processor, 24)
    out = model.generate(**inputs, **kwargs)
    # One character per token here: 17 characters and the end token, nothing more.
    assert out.sequences.shape[1] - inputs["input_ids"].shape[1] == VIN_LENGTH + 1
    assert (out.sequences[:, -1] == tok.eos_token_id).all()


# -- configuration ----------------------------------------------------------------------------


def test_decoding_keys_are_checked():
    from vin_ocr.models.lfm2_vl import Lfm2Vl

    family = Lfm2Vl()
    family.settings.decoding = {"num_beam": 4}
    with pytest.raises(ValueError, match=r"lfm2_vl\.decoding.*\['num_beam'\]"):
        family.decoding()
    with pytest.raises(ValueError, match="num_beams >= 2"):
        VlmDecoding(check_digit_search=True, num_beams=1)
    assert VlmDecoding(check_digit_search=False, num_beams=1).constrained


@pytest.mark.parametrize("name", ["lfm2_5_vl", "lfm2_vl_450m", "deepseek_ocr"])
def test_model_configs_carry_valid_decoding_keys(name):
    from omegaconf import OmegaConf

    import vin_ocr

    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / f"{name}.yaml")
    decoding = settings_from(VlmDecoding, cfg.decoding, f"{name}.decoding")
    assert decoding.constrained and decoding.check_digit_search and decoding.num_beams >= 2
