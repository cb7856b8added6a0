"""Tool schemas reach the model through the chat template's tools= or the documented text form."""

import json

from agentloop.policies.chat import render_chat, template_supports_tools
from agentloop.types import Message

SCHEMA = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


class TemplateTokenizer:
    """A tokenizer stand-in with a real Jinja chat template, rendered by transformers' own renderer."""

    def __init__(self, template):
        self.chat_template = template

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, tools=None):
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(conversations=[messages], chat_template=self.chat_template, tools=tools,
                                            add_generation_prompt=add_generation_prompt)
        return rendered[0]


TOOLS_TEMPLATE = ("{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
                  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant:{% endif %}")
PLAIN_TEMPLATE = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant:{% endif %}")


def test_template_with_tools_support_renders_them_natively():
    tok = TemplateTokenizer(TOOLS_TEMPLATE)
    assert template_supports_tools(tok)
    text = render_chat(tok, [Message(role="user", content="2+3?")], [SCHEMA])
    assert text.startswith("TOOLS:add;") and "<tools>" not in text


def test_template_without_tools_gets_the_text_form_in_the_system_message():
    tok = TemplateTokenizer(PLAIN_TEMPLATE)
    assert not template_supports_tools(tok)
    text = render_chat(tok, [Message(role="system", content="Be brief."), Message(role="user", content="2+3?")],
                       [SCHEMA])
    assert text.startswith("system: Be brief.") and "<tools>" in text
    schema_line = text.split("<tools>\n")[1].splitlines()[0]
    assert json.loads(schema_line) == SCHEMA


def test_native_tool_env_with_the_default_model_tokenizer(hf32):
    from agentloop.environments.tools.function_calling import FunctionCallingEnv

    env = FunctionCallingEnv(tool_prompt="native")
    obs, info = env.reset(seed=0)
    assert all("<tools>" not in m.content for m in obs) and info["render_tools"] == info["tools"]
    text = render_chat(hf32.tokenizer, obs, info["render_tools"])
    # SmolLM2's template has no tools support: the documented text form carries them.
    assert "<tools>" in text and info["tools"][0]["function"]["name"] in text
