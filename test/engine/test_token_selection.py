"""Which Qwen positions become sparse tokens and where the dense bias is read (reference §1.3)."""

from __future__ import annotations

import torch

from converseg_ros.modeling.token_selection import non_text_token_ids, select_text_positions


def _selected_tokens(net, prompt, image):
    inputs = net.inputs.batch([image], [prompt])
    text, eos_pos = select_text_positions(
        inputs["input_ids"], inputs["attention_mask"], net.adapter.eos_id, net.adapter.non_text_ids
    )
    ids = inputs["input_ids"][0]
    return [net.inputs.tokenizer.decode([int(i)]) for i in ids[text[0]]], int(eos_pos[0]), ids


def test_sparse_tokens_are_system_user_header_prompt_and_final_newline(tiny_net, photos):
    prompt = "segment surfaces safe to place hot items"
    tokens, eos_pos, ids = _selected_tokens(tiny_net, prompt, photos["coffee"])
    tokenizer = tiny_net.inputs.tokenizer
    prompt_tokens = [tokenizer.decode([i]) for i in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    header = ["system", "\n", "You", " are", " a", " helpful", " assistant", ".", "\n", "user", "\n"]
    assert tokens == header + prompt_tokens + ["\n"]
    assert len(tokens) == 12 + len(prompt_tokens)
    # the dense bias comes from the <|im_end|> closing the user turn, the last one in the sequence
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert int(ids[eos_pos]) == im_end
    assert eos_pos == max(i for i, t in enumerate(ids.tolist()) if t == im_end)
    assert eos_pos == len(ids) - 2  # followed only by the final "\n"


def test_special_and_visual_tokens_excluded_but_plain_added_tokens_kept(tiny_net):
    tokenizer = tiny_net.inputs.tokenizer
    excluded = set(non_text_token_ids(tokenizer))
    for name in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>", "<|box_start|>"):
        assert tokenizer.convert_tokens_to_ids(name) in excluded, name
    assert tokenizer.convert_tokens_to_ids("<tool_call>") not in excluded  # added, not special: text


def test_padding_excluded_and_eos_fallback_without_im_end():
    eos, pad = 9, 0
    non_text = torch.tensor([eos, pad, 7])
    input_ids = torch.tensor([[5, 7, 3, 4, eos, 6], [5, 3, 4, 6, pad, pad]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    text, eos_pos = select_text_positions(input_ids, attention, eos, non_text)
    assert eos_pos.tolist() == [4, 3]  # row 2 has no eos: last attended position
    assert text.tolist() == [[True, False, True, True, False, True], [True, True, True, False, False, False]]


def test_engine_prefix_and_suffix_reassemble_the_processor_sequence(tiny_net, photos):
    image = photos["chelsea"]
    prompt = "which box can I pull without toppling the stack?"
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    full = tiny_net.inputs.processor.apply_chat_template(
        conversation, add_generation_prompt=False, tokenize=True, return_dict=True, return_tensors="pt",
        images=[image],
    )
    prefix = tiny_net.inputs.prefix(image)
    suffix_ids, _ = tiny_net.inputs.suffixes([tiny_net.inputs.clean_prompt(prompt)])
    joined = torch.cat([prefix["input_ids"][0], suffix_ids[0]])
    assert joined.tolist() == full["input_ids"][0].tolist()
    assert torch.equal(prefix["pixel_values"], full["pixel_values"])
