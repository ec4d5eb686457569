// Reference tokenizations for tests/test_tokenizer.c, made with independent implementations:
// Hugging Face's `tokenizers` (Node bindings to the Rust library transformers uses) for every
// tokenizer.json, and OpenAI's `tiktoken` (its Rust core built for WASM) for Llama 3's
// tokenizer.model. CI only reads the committed outputs; rerun this after changing texts.jsonl:
//
//   mkdir -p /tmp/tok-npm && (cd /tmp/tok-npm && npm init -y && npm install tokenizers tiktoken)
//   NODE_PATH=/tmp/tok-npm/node_modules node tools/make_tokenizer_fixtures.mjs [SHARED_DIR]
//
// SHARED_DIR (default ../shared beside the checkout) holds tokenizers/{gpt2,pythia,llama3}. The
// script also writes the two synthetic SentencePiece-style tokenizers (no real Llama 2 / Mistral
// file is available): spm/ in Llama 2's format (Prepend + Replace normalizers, byte fallback, a
// "<s> $A" template, merges as "a b" strings) and spm_meta/ in the later Metaspace format (merges
// as pairs, some byte tokens missing so unknown characters fuse into <unk>, "<s> $A </s>").
// Also bytelevel/: a byte-level tokenizer laid out like Llama 3's converted tokenizer.json.
// Their vocabularies come from a small deterministic BPE training run on the text set.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { Tokenizer } = require("tokenizers");
const { Tiktoken } = require("tiktoken/lite");

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const shared = path.resolve(process.argv[2] ?? path.join(root, "..", "shared"));
const out = path.join(root, "tests", "fixtures", "tokenizers");
const texts = fs.readFileSync(path.join(out, "texts.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));

// --- synthetic SentencePiece-style BPE -------------------------------------------------------
const META = "\u2581";

// Counts adjacent symbol pairs over words (arrays of symbols) and merges the most frequent one,
// ties broken by the pair's text, until `count` merges are made.
function trainMerges(words, count) {
  const merges = [];
  for (let m = 0; m < count; m++) {
    const freq = new Map();
    for (const w of words)
      for (let i = 0; i + 1 < w.length; i++) {
        const k = w[i] + " " + w[i + 1];
        freq.set(k, (freq.get(k) ?? 0) + 1);
      }
    let best = null, bestN = 1;
    for (const [k, n] of freq) if (n > bestN || (n === bestN && best !== null && k < best)) { best = k; bestN = n; }
    if (best === null) break;
    const [a, b] = best.split(" ");
    merges.push([a, b]);
    for (const w of words)
      for (let i = 0; i + 1 < w.length; i++)
        if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
  }
  return merges;
}

function syntheticSpm({ skipBytes, legacy }) {
  // Words: each text with spaces as META, split before every META. Only Latin, Cyrillic and
  // Greek letters, digits and ASCII punctuation join the alphabet; other characters (CJK, emoji,
  // Arabic...) must go through byte fallback.
  const inAlphabet = (c) => /[\x21-\x7e\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]/u.test(c) || c === META;
  const words = [];
  for (const { text } of texts) {
    const s = (META + text.replaceAll(" ", META)).normalize("NFC");
    for (const w of s.split(new RegExp(`(?=${META})`, "u")))
      if ([...w].every(inAlphabet) && w.length > 0) words.push([...w]);
  }
  const vocab = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  let id = 3;
  for (let b = 0; b < 256; b++) {
    if (skipBytes && b >= 0xf0 && b <= 0xf4) continue;
    vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = id++;
  }
  const alphabet = [...new Set(words.flat())].sort();
  for (const c of alphabet) vocab[c] = id++;
  const merges = trainMerges(words, 300);
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  const added = ["<unk>", "<s>", "</s>"].map((content, i) => ({
    id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const special = (t) => ({ SpecialToken: { id: t, type_id: 0 } });
  const seq = { Sequence: { id: "A", type_id: 0 } };
  const model = {
    type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab,
    merges: legacy ? merges.map(([a, b]) => `${a} ${b}`) : merges,
  };
  const specials = { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] }, "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] } };
  if (legacy)
    return {
      version: "1.0", truncation: null, padding: null, added_tokens: added,
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: META }, { type: "Replace", pattern: { String: " " }, content: META }] },
      pre_tokenizer: null,
      post_processor: { type: "TemplateProcessing", single: [special("<s>"), seq], pair: [special("<s>"), seq, special("<s>"), { Sequence: { id: "B", type_id: 1 } }], special_tokens: { "<s>": specials["<s>"] } },
      decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: META }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
      model,
    };
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: META, prepend_scheme: "first", split: false },
    post_processor: { type: "TemplateProcessing", single: [special("<s>"), seq, special("</s>")], pair: [special("<s>"), seq, special("</s>"), { Sequence: { id: "B", type_id: 1 } }], special_tokens: specials },
    decoder: { type: "Sequence", decoders: [{ type: "Metaspace", replacement: META, prepend_scheme: "first", split: false }, { type: "ByteFallback" }, { type: "Fuse" }] },
    model,
  };
}

// A byte-level tokenizer in the layout of Llama 3's converted tokenizer.json: a Split pre-tokenizer
// with Llama 3's pattern, then ByteLevel without its own regex, ignore_merges, a Sequence
// post-processor (ByteLevel, then a "<|begin_of_text|> $A" template) and the ByteLevel decoder.
function byteToUnicode() {
  const keep = (b) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = [];
  let next = 256;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep(b) ? b : next++);
  return map;
}

function syntheticByteLevel() {
  const map = byteToUnicode();
  const enc = new TextEncoder();
  const words = [];
  for (const { text } of texts)
    for (const w of text.split(/(?= )/u)) if (w) words.push([...enc.encode(w)].map((b) => map[b]));
  const vocab = {};
  let id = 0;
  for (const c of map) vocab[c] = id++;
  const merges = trainMerges(words, 400);
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  const specials = ["<|begin_of_text|>", "<|end_of_text|>"].map((content) => ({
    id: id++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const pat = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: specials, normalizer: null,
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: pat }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: { type: "Sequence", processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [specials[0].id], tokens: ["<|begin_of_text|>"] } } }] },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges },
  };
}

fs.mkdirSync(path.join(out, "bytelevel"), { recursive: true });
fs.writeFileSync(path.join(out, "bytelevel", "tokenizer.json"), JSON.stringify(syntheticByteLevel(), null, 1) + "\n");

for (const [name, opts] of [["spm", { legacy: true, skipBytes: false }], ["spm_meta", { legacy: false, skipBytes: true }]]) {
  fs.mkdirSync(path.join(out, name), { recursive: true });
  fs.writeFileSync(path.join(out, name, "tokenizer.json"), JSON.stringify(syntheticSpm(opts), null, 1) + "\n");
}

// --- references ------------------------------------------------------------------------------
// One JSON file per tokenizer: for every text its ids without and with the special-token
// template, and the decoded text of the former (special tokens kept).
async function hfReferences(file) {
  const tok = Tokenizer.fromFile(file);
  const cases = [];
  for (const { name, text } of texts) {
    const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const idsSpecial = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
    cases.push({ name, ids, ids_special: idsSpecial, decoded: await tok.decode(ids, false) });
  }
  return cases;
}

// Llama 3's pattern and special tokens, as in Meta's llama-models (models/llama3/tokenizer.py).
function llama3Tiktoken(file) {
  const pat = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
  const basic = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
    "<|python_tag|>", "<|image|>"];
  const names = [...basic];
  for (let i = 0; names.length < 256; i++) names.push(`<|reserved_special_token_${2 + i}|>`);
  const special = {};
  names.forEach((n, i) => (special[n] = 128000 + i));
  return new Tiktoken(fs.readFileSync(file, "utf8"), special, pat);
}

function tiktokenReferences(file) {
  const enc = llama3Tiktoken(file);
  const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }); // keep a leading U+FEFF
  const cases = [];
  for (const { name, text } of texts) {
    const ids = [...enc.encode(text, "all")];
    // The template of Meta's encode(bos=True, eos=False), as HF's Llama 3 tokenizer.json does.
    cases.push({ name, ids, ids_special: [128000, ...ids], ids_plain: [...enc.encode_ordinary(text)], decoded: utf8.decode(enc.decode(new Uint32Array(ids))) });
  }
  enc.free();
  return cases;
}

// Versions from the packages' own package.json (tiktoken's "exports" hides it from require).
const pkg = (n) => {
  let dir = path.dirname(require.resolve(n));
  while (!fs.existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  return JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).version;
};
const meta = { generator: "tools/make_tokenizer_fixtures.mjs", tokenizers: pkg("tokenizers"), tiktoken: pkg("tiktoken") };
const jobs = [
  ["gpt2", () => hfReferences(path.join(shared, "tokenizers", "gpt2", "tokenizer.json"))],
  ["pythia", () => hfReferences(path.join(shared, "tokenizers", "pythia", "tokenizer.json"))],
  ["llama3", () => tiktokenReferences(path.join(shared, "tokenizers", "llama3", "tokenizer.model"))],
  ["spm", () => hfReferences(path.join(out, "spm", "tokenizer.json"))],
  ["spm_meta", () => hfReferences(path.join(out, "spm_meta", "tokenizer.json"))],
  ["bytelevel", () => hfReferences(path.join(out, "bytelevel", "tokenizer.json"))],
];
for (const [name, make] of jobs) {
  const cases = await make();
  const body = cases.map((c) => JSON.stringify(c)).join(",\n ");
  fs.writeFileSync(path.join(out, `${name}.ref.json`), `{"meta": ${JSON.stringify(meta)},\n "cases": [\n ${body}]}\n`);
  console.log(`${name}: ${cases.length} texts`);
}
