#!/usr/bin/env python3
"""Drive `tokenscale serve` with the `openai` package exactly as a user's code would.

    python3 -m venv /tmp/openai-venv && /tmp/openai-venv/bin/pip install openai
    tokenscale serve &                                  # the embedded tiny model on :8000
    /tmp/openai-venv/bin/python tools/serve/openai_client.py [--base-url URL] [--image PNG]

Checks: a chat with an image, a streamed answer equal to the plain one, a per-request vision
budget through `extra_body={"vision_tokens": 16}` (usage reports it), and an error answer
raised as the client's exception. Exits non-zero on the first failure. Not run in CI (no
Python there).
"""

import argparse
import base64
import io
import struct
import sys
import zlib

import openai


def tiny_png(size=48):
    """A gradient PNG written with the standard library (no Pillow needed)."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 5 % 256, y * 5 % 256, 120)) for x in range(size)) for y in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="none", help="the server's --api-key, if it has one")
    parser.add_argument("--image", help="a PNG or JPEG to ask about (default: a generated gradient)")
    args = parser.parse_args()

    image = open(args.image, "rb").read() if args.image else tiny_png()
    mime = "image/jpeg" if image[:2] == b"\xff\xd8" else "image/png"
    url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "What shape is in the image?"},
    ]}]

    plain = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
    answer = plain.choices[0].message.content
    print(f"model {model}: {answer!r} ({plain.usage.prompt_tokens} prompt tokens, {plain.usage.completion_tokens} answer tokens)")

    pieces = []
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    streamed = "".join(pieces)
    print(f"streamed in {len(pieces)} chunks: {streamed!r}")
    if streamed != answer:
        sys.exit("FAIL: the streamed answer differs from the plain one")

    budget = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0,
                                            extra_body={"vision_tokens": 16})
    vision = (budget.usage.model_extra or {}).get("vision_tokens")
    print(f"vision_tokens=16: {budget.choices[0].message.content!r} (usage.vision_tokens = {vision})")
    if vision != 16:
        sys.exit(f"FAIL: usage.vision_tokens is {vision}, not 16")

    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=24,
                                       extra_body={"vision_tokens": 0})
        sys.exit("FAIL: vision_tokens=0 was accepted")
    except openai.BadRequestError as e:
        print(f"vision_tokens=0 refused as expected: {e.status_code} {e.body.get('message') if isinstance(e.body, dict) else e.body}")
    print("ok")


if __name__ == "__main__":
    main()
