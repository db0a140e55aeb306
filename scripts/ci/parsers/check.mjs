// Parses the relay's rendered hostile posts with each platform's own parser
// and fails when a post's content became live: a link, mention or markup
// node that the same template does not produce for a benign post, or an
// HTML tag outside the platform's allowlist.
//
// Usage: node check.mjs CASES.json, where CASES.json is a list of
// {chat, parser, input, text, benign} written by tests/parser_escaping.rs.
// A link whose shown text is exactly its target (a bare URL or address,
// shown as written) is an honest autolink and allowed: every platform here
// autolinks them, and the reader sees where it goes. Cases with `known`
// are holes reported to their provider's owner: listed, not failed, until
// they pass (then they fail, so the list is kept true).
import { readFileSync } from 'node:fs';

import { parse as rocketParse } from '@rocket.chat/message-parser';
import { parse as discordParse } from 'discord-markdown-parser';
import { marked } from 'marked';
import { parseDocument } from 'htmlparser2';

// Read from node_modules: some packages do not export their package.json.
const version = (p) => JSON.parse(readFileSync(new URL(`node_modules/${p}/package.json`, import.meta.url), 'utf8')).version;

// Mass mentions that notify when they stand in a message's text.
const MASS = /(^|[^\p{L}\p{N}_\u200B\u200C\u200D])@(everyone|here|channel|all|room)\b/iu;

// Telegram Bot API "HTML style" (core.telegram.org/bots/api#html-style).
const TELEGRAM_TAGS = new Set(['b', 'strong', 'i', 'em', 'u', 'ins', 's', 'strike', 'del', 'span',
  'tg-spoiler', 'a', 'tg-emoji', 'code', 'pre', 'blockquote']);
// Element's allowlist for `formatted_body` (matrix-react-sdk src/HtmlUtils.tsx,
// sanitizeHtmlParams.allowedTags), as written there.
const MATRIX_TAGS = new Set(['font', 'del', 's', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'p',
  'a', 'ul', 'ol', 'sup', 'sub', 'nl', 'li', 'b', 'i', 'u', 'strong', 'em', 'strike', 'code', 'hr', 'br',
  'div', 'table', 'thead', 'caption', 'tbody', 'tr', 'th', 'td', 'pre', 'span', 'img', 'details',
  'summary', 'mx-reply']);

// Each parser: the live nodes of a text ({kind, target?, label?}) and its
// visible text. Rocket.Chat with its client's options (emoticons and
// colours on, KaTeX with the default `\[ \]` / `\( \)` syntax).
const PARSERS = {
  rocketchat: {
    name: `@rocket.chat/message-parser@${version('@rocket.chat/message-parser')}`,
    run(text) {
      const ast = rocketParse(text, { colors: true, emoticons: true, katex: { parenthesisSyntax: true, dollarSyntax: false } });
      const live = [];
      const plain = [];
      const inert = new Set(['PARAGRAPH', 'PLAIN_TEXT', 'LINE_BREAK', 'EMOJI', 'BIG_EMOJI']);
      const labelOf = (v) => (Array.isArray(v) ? v.map(labelOf).join('') : v && typeof v === 'object' ? (v.type === 'PLAIN_TEXT' ? v.value : labelOf(v.value)) : '');
      const walk = (n) => {
        if (Array.isArray(n)) return n.forEach(walk);
        if (!n || typeof n !== 'object') return;
        if (n.type === 'PLAIN_TEXT') plain.push(n.value);
        if (n.type && !inert.has(n.type)) {
          if (n.type === 'LINK') live.push({ kind: 'LINK', target: n.value.src.value, label: labelOf(n.value.label) });
          else if (n.type === 'IMAGE') live.push({ kind: 'IMAGE', target: n.value.src.value });
          else live.push({ kind: n.type });
        }
        if (n.type === 'LINK') return walk(n.value.label);
        if (n.value && typeof n.value === 'object') walk(n.value);
      };
      walk(ast);
      return { live, visible: plain.join('') };
    },
  },
  discord: {
    name: `discord-markdown-parser@${version('discord-markdown-parser')} (simple-markdown rules bundled; extended rules: webhook messages)`,
    run(text) {
      const live = [];
      const plain = [];
      const inert = new Set(['text', 'br', 'newline', 'paragraph', 'emoji', 'twemoji', 'escape']);
      const labelOf = (c) => (typeof c === 'string' ? c : Array.isArray(c) ? c.map(labelOf).join('') : c && c.content !== undefined ? labelOf(c.content) : '');
      const walk = (n) => {
        if (Array.isArray(n)) return n.forEach(walk);
        if (!n || typeof n !== 'object') return;
        if (n.type === 'text') plain.push(n.content);
        if (!inert.has(n.type)) {
          if (n.target !== undefined) live.push({ kind: 'link', target: n.target, label: labelOf(n.content) });
          else live.push({ kind: n.type, target: n.id });
        }
        if (Array.isArray(n.content)) walk(n.content);
      };
      walk(discordParse(text, 'extended'));
      return { live, visible: plain.join('') };
    },
  },
  mattermost: {
    // Mattermost's webapp renders with its own fork of marked, not
    // published on npm; upstream marked (GFM) is the closest published one.
    name: `marked@${version('marked')} (GFM; Mattermost's marked fork is not on npm)`,
    run(text) {
      const live = [];
      const plain = [];
      const inert = new Set(['paragraph', 'text', 'space', 'escape', 'br']);
      const walk = (t) => {
        if (Array.isArray(t)) return t.forEach(walk);
        if (!t || typeof t !== 'object') return;
        if ((t.type === 'text' || t.type === 'escape') && !t.tokens) plain.push(t.text);
        if (!inert.has(t.type)) {
          if (t.type === 'link' || t.type === 'image') live.push({ kind: t.type, target: t.href, label: t.text });
          else live.push({ kind: t.type === 'blockquote' ? 'blockquote' : t.type });
        }
        if (t.tokens) walk(t.tokens);
        if (t.items) walk(t.items);
      };
      walk(marked.lexer(text, { gfm: true }));
      // Mattermost links `~channel` names in text.
      const visible = plain.join('');
      for (const m of visible.matchAll(/(^|\s)~([a-z0-9_-]+)/gi)) live.push({ kind: 'channel-link', target: m[2] });
      return { live, visible };
    },
  },
  'telegram-html': {
    name: `htmlparser2@${version('htmlparser2')} with Telegram's tag list`,
    run: (text) => html(text, TELEGRAM_TAGS),
  },
  'matrix-html': {
    name: `htmlparser2@${version('htmlparser2')} with Element's allowlist`,
    run: (text) => html(text, MATRIX_TAGS),
  },
};

function html(text, allowed) {
  const live = [];
  const plain = [];
  const textOf = (n) => (n.type === 'text' ? n.data : (n.children || []).map(textOf).join(''));
  const walk = (n) => {
    if (n.type === 'text') plain.push(n.data);
    if (n.type === 'tag' || n.type === 'script' || n.type === 'style') {
      if (allowed && !allowed.has(n.name)) live.push({ kind: `disallowed <${n.name}>` });
      const cls = n.attribs.class ? `.${n.attribs.class}` : '';
      live.push({ kind: `<${n.name}${cls}>`, target: n.attribs.href ?? n.attribs.src, label: textOf(n) });
    }
    (n.children || []).forEach(walk);
  };
  walk(parseDocument(text, { decodeEntities: true }));
  return { live, visible: plain.join('') };
}

// A link that shows exactly where it goes, to a URL the post wrote.
function honest(node) {
  if (node.target === undefined || node.label === undefined) return false;
  const label = node.label.trim();
  const target = node.target.replace(/^(mailto:|tel:)/, '');
  return label === target || `https://${label}` === target || `http://${label}` === target;
}

const key = (n) => `${n.kind}${n.target !== undefined ? ` -> ${n.target}` : ''}`;

function diff(hostile, benign) {
  const left = new Map();
  for (const n of benign) left.set(key(n), (left.get(key(n)) || 0) + 1);
  const extra = [];
  for (const n of hostile) {
    const k = key(n);
    if (left.get(k)) left.set(k, left.get(k) - 1);
    else extra.push(k);
  }
  const missing = [...left].filter(([, c]) => c > 0).map(([k]) => `lost ${k}`);
  return { extra, missing };
}

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let failed = 0;
let known = 0;
let lost = 0;
const used = new Set();
for (const c of cases) {
  const parser = PARSERS[c.parser];
  if (!parser) throw new Error(`unknown parser ${c.parser}`);
  used.add(parser.name);
  const h = parser.run(c.text);
  const b = parser.run(c.benign);
  const { extra: problems, missing } = diff(h.live.filter((n) => !honest(n)), b.live);
  // The relay's own markup lost (its title shown unlinked) is untidy, not
  // a post's content made live: noted, not failed.
  if (missing.length) {
    lost += 1;
    console.log(`NOTE ${c.chat}: the relay's own markup did not survive ${JSON.stringify(c.input)}: ${missing.join(', ')}`);
  }
  if (MASS.test(h.visible)) problems.push(`mass mention in text: ${JSON.stringify(h.visible.match(MASS)[0])}`);
  if (c.known) {
    if (problems.length) {
      known += 1;
      console.log(`KNOWN ${c.chat}: ${c.known}\n  input: ${JSON.stringify(c.input)}\n  ${problems.join('\n  ')}`);
    } else {
      failed += 1;
      console.log(`FAIL ${c.chat}: listed as a known hole but now inert, remove it from KNOWN: ${JSON.stringify(c.input)}`);
    }
    continue;
  }
  if (problems.length) {
    failed += 1;
    console.log(`FAIL ${c.chat} (${parser.name})\n  input: ${JSON.stringify(c.input)}\n  sent:  ${JSON.stringify(c.text)}\n  ${problems.join('\n  ')}`);
  }
}
console.log(`parsers: ${[...used].join('; ')}`);
console.log(`parser escaping: ${cases.length} checked, ${failed} failed, ${known} known holes, ${lost} with the relay's markup lost`);
process.exit(failed ? 1 : 0);
