// Checks card requests against the platforms' own published types and SDKs.
//
//   node check.mjs DIR_OR_FILE...   check every KIND.CHAT.FIXTURE.json request
//   node check.mjs --self-test      the samples/ must pass or fail as named
//
// A request is {"method","url","headers","body"} (tests/card_schemas.rs writes
// them), the body parsed JSON. Which check applies is chosen by the KIND
// prefix of the file name and by the request's endpoint (URL and method): a
// Slack chat.update body is not a chat.postMessage body, a Discord PATCH is an
// edit. Typed checks write one .ts file per body,
// `export const body = (<json>) satisfies T;`, so an unknown property, a
// missing one or a wrong type is a compile error, and run
// `tsc --noEmit --strict` once over all of them, each error mapped back to the
// body's file and JSON pointer. Adaptive Cards are also parsed with the
// Adaptive Cards SDK; Rocket.Chat's REST bodies go through the validators its
// server runs. Google Chat is check_google.py's (Google publishes a discovery
// document on PyPI, not npm types). A kind that publishes nothing is reported
// as `none`, never `ok`; a kind or endpoint this script does not know FAILs.
//
// Prints one line per request (`ok`, `FAIL`, `none`, `google`) and exits 1 if
// any failed.
import { execFileSync } from "node:child_process";
import { createRequire, register } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// lib/ is extension-less ESM that node cannot load; dist/ is the UMD build.
const AC = require("adaptivecards/dist/adaptivecards.js");

register("./resolve-hook.mjs", import.meta.url);
const rcValidators = await import("@rocket.chat/rest-typings/dist/v1/chat.js");

const ADAPTIVE = "application/vnd.microsoft.card.adaptive";
// The newest Adaptive Card version each host renders (Teams: 1.5 in
// Workflows posts; Webex: 1.3): a newer `version` shows the fallback text only.
const ADAPTIVE_MAX = { teams: "1.5", webex: "1.3" };
const ONLY_TEXT = "no card format (text-only platform)";
// What each kind without a published schema or SDK types is; tests and the
// README say the same.
const UNPUBLISHED = {
  console: ONLY_TEXT,
  dingtalk: "DingTalk's own npm packages (dingtalk-stream, dingtalk-jsapi) type no robot webhook message",
  gotify: "Gotify publishes no official schema or types",
  groupme: "GroupMe publishes no official schema or types",
  hipchat: "HipChat (retired) publishes nothing",
  irc: ONLY_TEXT,
  mastodon: "Mastodon publishes no official package (masto is a community client)",
  messenger: "Messenger publishes no official schema or types on npm",
  ntfy: "ntfy publishes no official schema or types",
  pushover: "Pushover publishes no official schema or types",
  smtp: ONLY_TEXT,
  telegram: "Telegram publishes no official package (@grammyjs/types, typegram are community typings)",
  webhook: "a generic webhook has no platform schema",
  wecom: "WeCom's own npm packages (@wecom/jssdk, @wecom/crypto) type no group robot message",
  xmpp: ONLY_TEXT,
  zulip: "Zulip's zulip-js has no message types",
};

// ---- which check applies ---------------------------------------------------

/** The path of a request URL, or "" when it is redacted (a webhook: the URL is the credential). */
function urlPath(url) {
  try {
    return new URL(url).pathname;
  } catch {
    return "";
  }
}

/** A typed check: `body` must satisfy `type`, imported per `imports`. */
const typed = (type, imports, value = undefined, at = "") => ({ kind: "ts", type, imports, value, at });

const SLACK_API = (n) => [`import type { ${n} } from "@slack/web-api";`];
const DISCORD = (n) => [`import type { ${n} } from "discord-api-types/v10";`];
const MM = [
  `import type { Post } from "@mattermost/types/posts";`,
  `import type { MessageAttachment } from "@mattermost/types/message_attachments";`,
];
const RC = [
  `import type { MessageAttachment } from "@rocket.chat/core-typings";`,
  `type Json<T> = T extends Date ? string : T extends (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;`,
];
// matrix-js-sdk's event types use TS string enums (MsgType.Notice), which a
// JSON string literal is not assignable to: Lit<> reads each enum as its
// string values, nothing else.
const MATRIX = [
  `import type { RoomMessageEventContent, RoomMessageTextEventContent } from "matrix-js-sdk/lib/@types/events";`,
  `import type { IEventRelation } from "matrix-js-sdk/lib/models/event";`,
  // RoomMessageEventContent's relations cannot say a thread reply's reply
  // fallback (is_falling_back + m.in_reply_to, as the spec and the SDK's own
  // sends have it); a thread reply is read with the SDK's IEventRelation.
  `type MatrixThreadReply = RoomMessageTextEventContent & { "m.relates_to": IEventRelation & { rel_type: "m.thread"; event_id: string } };`,
  `type Lit<T> = T extends string ? \`\${T}\` : T extends (infer U)[] ? Lit<U>[] : T extends object ? { [K in keyof T]: Lit<T[K]> } : T;`,
];
// Lark's Node SDK types the message card (JSON 1.0: header, elements); the
// custom bot's webhook envelope has no published type: its documented fields.
const LARK = [
  `import type { InteractiveCard } from "@larksuiteoapi/node-sdk";`,
  `type LarkBotCard = { msg_type: "interactive"; card: InteractiveCard; timestamp?: string; sign?: string };`,
];
const TEAMS_CARD = [`import type { IAdaptiveCard } from "@microsoft/teams.cards";`];

/**
 * The checks for one request: a list of {kind:"ts", type, imports, value?}
 * or {kind:"adaptive", card, at, host}; or {none: reason}; or {error}.
 */
function checksFor(kindName, req) {
  const { method, url, body } = req;
  const p = urlPath(url);
  if (method === "DELETE" || body === undefined || body === null) return { none: "no body" };
  if (kindName === "googlechat") return { google: true };
  if (kindName in UNPUBLISHED) return { none: UNPUBLISHED[kindName] };
  if (typeof body !== "object" || Array.isArray(body)) return { error: "the body is not a JSON object" };
  switch (kindName) {
    case "slack": {
      // The argument types let a block be the generic `Block` (any `type`),
      // which Slack refuses as invalid_blocks: every blocks array is also
      // checked as KnownBlock[].
      const known = slackBlocks(body).map(({ blocks, at }) => typed("KnownBlock[]", [`import type { KnownBlock } from "@slack/types";`], blocks, at));
      const api = { "/api/chat.postMessage": "ChatPostMessageArguments", "/api/chat.update": "ChatUpdateArguments", "/api/chat.delete": "ChatDeleteArguments" }[p];
      if (api) return [typed(api, SLACK_API(api)), ...known];
      if (p.startsWith("/api/")) return { error: `no type for the Slack Web API method ${p}` };
      // An incoming webhook (its URL redacted); an edit through one does not exist.
      if (method !== "POST") return { error: `a Slack incoming webhook takes POST, not ${method}` };
      return [typed("IncomingWebhookSendArguments", [`import type { IncomingWebhookSendArguments } from "@slack/webhook";`]), ...known];
    }
    case "discord": {
      // The webhook URL is the credential, so only the method tells execute from edit;
      // a bot token's channel endpoints are typed too.
      const bot = /\/channels\/\d+\/messages(\/\d+)?$/.exec(p);
      if (method === "POST" && bot && !bot[1]) return [typed("RESTPostAPIChannelMessageJSONBody", DISCORD("RESTPostAPIChannelMessageJSONBody"))];
      if (method === "PATCH" && bot && bot[1]) return [typed("RESTPatchAPIChannelMessageJSONBody", DISCORD("RESTPatchAPIChannelMessageJSONBody"))];
      if (method === "POST") return [typed("RESTPostAPIWebhookWithTokenJSONBody", DISCORD("RESTPostAPIWebhookWithTokenJSONBody"))];
      if (method === "PATCH") return [typed("RESTPatchAPIWebhookWithTokenMessageJSONBody", DISCORD("RESTPatchAPIWebhookWithTokenMessageJSONBody"))];
      return { error: `no Discord endpoint takes a ${method} body` };
    }
    case "mattermost": {
      // Post's server-set fields (id, create_at, ...) are required in the type;
      // a create or update names only some, so Partial, but every name and
      // type is still Post's and props.attachments is MessageAttachment[].
      const post = [...MM, `type MattermostPost = Omit<Partial<Post>, "props"> & { props?: { attachments?: MessageAttachment[]; [k: string]: unknown } };`];
      if (method === "POST" && p.endsWith("/api/v4/posts")) return [typed("MattermostPost", post)];
      if (method === "PUT" && /\/api\/v4\/posts\/[^/]+(\/patch)?$/.test(p)) return [typed("MattermostPost", post)];
      if (p.includes("/api/v4/")) return { error: `no Mattermost type for ${method} ${p}` };
      // An incoming webhook: Mattermost publishes no type for its payload,
      // so the envelope is its documented fields; attachments are the package's.
      const hook = `type MattermostWebhook = { text?: string; channel?: string; username?: string; icon_url?: string; icon_emoji?: string; type?: string; priority?: { priority?: "" | "important" | "urgent"; requested_ack?: boolean }; props?: Record<string, unknown>; attachments?: MessageAttachment[] };`;
      return [typed("MattermostWebhook", [...MM, hook])];
    }
    case "rocketchat": {
      const ep = { "/api/v1/chat.postMessage": "/v1/chat.postMessage", "/api/v1/chat.update": "/v1/chat.update", "/api/v1/chat.delete": "/v1/chat.delete" }[p];
      const name = { "/v1/chat.postMessage": "ChatPostMessage", "/v1/chat.update": "ChatUpdate", "/v1/chat.delete": "ChatDelete" }[ep];
      // The REST body is checked with the validator the server itself runs
      // on it (rest-typings' ajv schemas: isChatPostMessageProps, ...); they
      // type attachments only as objects, so those are also typed against
      // core-typings' MessageAttachment, whose `ts` is a server-side Date: on
      // the wire JSON has its ISO string, so the types are read through Json<>.
      const attachments = Array.isArray(body.attachments) ? [typed("Json<MessageAttachment>[]", RC, body.attachments, "/attachments")] : [];
      if (ep) return [{ kind: "rc-ajv", validator: `is${name}Props` }, ...attachments];
      if (p.includes("/api/")) return { error: `no Rocket.Chat type for ${p}` };
      // An incoming webhook: no published type for the payload, so the
      // fields the server's processWebhookMessage reads (it ignores others).
      const hook = `type RocketChatWebhook = { text?: string; msg?: string; alias?: string; username?: string; emoji?: string; icon_emoji?: string; avatar?: string; icon_url?: string; channel?: string | string[]; roomId?: string | string[]; tmid?: string; parseUrls?: boolean; groupable?: boolean; bot?: Record<string, unknown>; customFields?: Record<string, unknown>; attachments?: MessageAttachment[] };`;
      return [typed("Json<RocketChatWebhook>", [...RC, hook])];
    }
    case "lark": {
      if (body.msg_type !== "interactive") return { none: `msg_type ${JSON.stringify(body.msg_type)}: no card` };
      // Card JSON 2.0 (`schema: "2.0"`, `body.elements`) is not in the SDK's types.
      if (body.card && body.card.schema === "2.0") return { none: "card JSON 2.0 has no published type (the SDK types 1.0)" };
      return [typed("LarkBotCard", LARK)];
    }
    case "matrix":
    case "gitter": {
      const thread = body["m.relates_to"] && body["m.relates_to"].rel_type === "m.thread";
      const type = thread ? "Lit<MatrixThreadReply>" : "Lit<RoomMessageEventContent>";
      if (method === "PUT" && /\/send\/m\.room\.message\/[^/]+$/.test(p)) return [typed(type, MATRIX)];
      if (/\/redact\//.test(p)) return { none: "a redaction (no message content)" };
      return { error: `no Matrix type for ${method} ${p}` };
    }
    case "teams":
    case "webex": {
      const cards = adaptiveCards(body);
      // The envelopes are the platforms' documented fields (neither publishes
      // a type for them); the cards inside are typed and parsed below. A
      // Webex edit (PUT /v1/messages/{id}) takes roomId, text and markdown
      // only: no attachments, so an edit cannot change a card.
      let envelope;
      if (kindName === "teams") {
        if (body.type !== "message") return { error: `/type is ${JSON.stringify(body.type)}; a Workflows webhook takes "message"` };
        if (cards.length === 0) return { error: "no Adaptive Card attachment" };
        envelope = typed("TeamsMessage", [`type TeamsMessage = { type: "message"; summary?: string; text?: string; attachments: { contentType: "${ADAPTIVE}"; contentUrl?: string | null; content: object }[] };`]);
      } else if (method === "PUT" && /\/v1\/messages\/[^/]+$/.test(p)) {
        envelope = typed("WebexEdit", [`type WebexEdit = { roomId: string; text?: string; markdown?: string };`]);
      } else if (method === "POST" && p.endsWith("/v1/messages")) {
        envelope = typed("WebexMessage", [`type WebexMessage = { roomId?: string; toPersonId?: string; toPersonEmail?: string; parentId?: string; text?: string; markdown?: string; files?: string[]; attachments?: { contentType: "${ADAPTIVE}"; content: object }[] };`]);
      } else {
        return { error: `no Webex type for ${method} ${p}` };
      }
      return [envelope, ...cards.flatMap(({ card, at }) => [
        typed("IAdaptiveCard", TEAMS_CARD, card, at),
        { kind: "adaptive", card, at, host: kindName },
      ])];
    }
    default:
      return { error: `no checker knows the kind "${kindName}" (add it to check.mjs, or to UNPUBLISHED with the reason)` };
  }
}

/** The blocks arrays of a Slack body (its own and its attachments'), with their JSON pointers. */
function slackBlocks(body) {
  const out = [];
  if (Array.isArray(body.blocks)) out.push({ blocks: body.blocks, at: "/blocks" });
  (Array.isArray(body.attachments) ? body.attachments : []).forEach((a, i) => {
    if (a && Array.isArray(a.blocks)) out.push({ blocks: a.blocks, at: `/attachments/${i}/blocks` });
  });
  return out;
}

/** Every Adaptive Card in a Teams or Webex body, with its JSON pointer. */
function adaptiveCards(body) {
  return (Array.isArray(body.attachments) ? body.attachments : [])
    .map((a, i) => ({ a, i }))
    .filter(({ a }) => a && a.contentType === ADAPTIVE)
    .map(({ a, i }) => ({ card: a.content, at: `/attachments/${i}/content` }));
}

// ---- the Adaptive Cards SDK ------------------------------------------------

function versionAtMost(v, max) {
  const [a, b] = String(v).split(".").map(Number);
  const [c, d] = max.split(".").map(Number);
  return Number.isInteger(a) && Number.isInteger(b) && (a < c || (a === c && b <= d));
}

/** Problems the Adaptive Cards SDK finds in `card`, and the host's version limit. */
function adaptiveProblems(card, at, host) {
  const out = [];
  if (!card || typeof card !== "object") return [`${at}: not an object`];
  if (card.type !== "AdaptiveCard") out.push(`${at}/type: must be "AdaptiveCard"`);
  const max = ADAPTIVE_MAX[host];
  if (!versionAtMost(card.version, max)) out.push(`${at}/version: ${JSON.stringify(card.version)}; ${host} renders Adaptive Cards up to ${max}`);
  const target = AC.Version.parse(max, new AC.SerializationContext());
  const ctx = new AC.SerializationContext(target);
  const parsed = new AC.AdaptiveCard();
  parsed.parse(card, ctx);
  const events = [...Array(ctx.eventCount).keys()].map((i) => ctx.getEventAt(i));
  const validation = parsed.validateProperties().validationEvents;
  for (const e of [...events, ...validation]) {
    // Hints are advice, not a rejection.
    if (e.event === AC.ValidationEvent.Hint) continue;
    const owner = e.source && e.source.getJsonTypeName ? ` (${e.source.getJsonTypeName()})` : "";
    out.push(`${at}${owner}: Adaptive Cards SDK ${AC.ValidationEvent[e.event]}: ${e.message}`);
  }
  return out;
}

// ---- typed checks with tsc -------------------------------------------------

/** JSON pretty-printed, with the JSON pointer of each line. */
function pretty(value, indent = "", at = "", lines = [], prefix = "") {
  const push = (text) => lines.push({ text: indent + prefix + text, at });
  if (Array.isArray(value) && value.length) {
    push("[");
    value.forEach((v, i) => {
      pretty(v, indent + "  ", `${at}/${i}`, lines, "");
      if (i < value.length - 1) lines[lines.length - 1].text += ",";
    });
    lines.push({ text: indent + "]", at });
  } else if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    push("{");
    const keys = Object.keys(value);
    keys.forEach((k, i) => {
      pretty(value[k], indent + "  ", `${at}/${k.replace(/~/g, "~0").replace(/\//g, "~1")}`, lines, `${JSON.stringify(k)}: `);
      if (i < keys.length - 1) lines[lines.length - 1].text += ",";
    });
    lines.push({ text: indent + "}", at });
  } else {
    push(JSON.stringify(value));
  }
  return lines;
}

/**
 * Whether a tsc message only says an enum value's case differs. Adaptive
 * Cards' enums are case-insensitive (the schema's patterns accept "small" for
 * "Small", and the SDK and Teams parse either); the Teams SDK's types spell one
 * case, so those messages are not rejections.
 */
function caseOnly(msg) {
  const m = /^Type '"([^"]*)"' is not assignable to type '(.*)'\.(?: Did you mean '"([^"]*)"'\?)?$/.exec(msg);
  if (!m) return false;
  const want = m[3] ?? (/^"([^"]*)"$/.exec(m[2]) || [])[1];
  return want !== undefined && want.toLowerCase() === m[1].toLowerCase();
}

/** Runs tsc over every typed check; returns {index: [problem...]}. */
function runTsc(checks) {
  const gen = fs.mkdtempSync(path.join(here, ".gen-"));
  try {
    const files = checks.map((c, i) => {
      const lines = pretty(c.value);
      const head = [`// ${c.name}`, ...c.imports, `export const body = (`];
      const text = [...head, ...lines.map((l) => l.text), `) satisfies ${c.type};`, ""].join("\n");
      const file = path.join(gen, `b${i}.ts`);
      fs.writeFileSync(file, text);
      return { file, offset: head.length, lines };
    });
    fs.writeFileSync(
      path.join(gen, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true, noEmit: true, skipLibCheck: true, target: "es2022",
          module: "esnext", moduleResolution: "bundler", types: [], 
        },
        files: files.map((f) => path.basename(f.file)),
      }),
    );
    let out = "";
    try {
      execFileSync(process.execPath, [require.resolve("typescript/lib/tsc.js"), "-p", gen, "--pretty", "false"], { encoding: "utf8", maxBuffer: 64 << 20 });
    } catch (e) {
      out = (e.stdout || "") + (e.stderr || "");
      if (!out) throw e;
    }
    const problems = {};
    // `bN.ts(LINE,COL): error TSxxxx: message`, continued on indented lines.
    const re = /^(?:.*[\\/])?b(\d+)\.ts\((\d+),(\d+)\): error (TS\d+): (.*)$/;
    let last = null;
    for (const line of out.split("\n")) {
      const m = re.exec(line);
      if (m) {
        const i = Number(m[1]);
        const f = files[i];
        const l = f.lines[Number(m[2]) - 1 - f.offset];
        const at = l ? checks[i].prefix + l.at || "/" : "(the type's import)";
        last = { i, text: `${at}: ${checks[i].type}: ${m[4]} ${m[5]}` };
        if (checks[i].type === "IAdaptiveCard" && caseOnly(m[5])) continue;
        (problems[i] ||= []).push(last);
      } else if (last && /^\s+\S/.test(line)) {
        last.text += ` | ${line.trim()}`;
      } else if (line.trim()) {
        // An error outside the generated files (a broken install) fails them all.
        checks.forEach((_, i) => (problems[i] ||= []).push({ text: `tsc: ${line.trim()}` }));
      }
    }
    return Object.fromEntries(Object.entries(problems).map(([i, ps]) => [i, ps.map((p) => p.text)]));
  } finally {
    fs.rmSync(gen, { recursive: true, force: true });
  }
}

// ---- driver ----------------------------------------------------------------

/** Checks every request; returns [{name, status, what, problems}]. */
export function checkAll(requests) {
  const results = [];
  const ts = [];
  for (const { name, req } of requests) {
    const kindName = name.split(".")[0];
    const r = { name, status: "ok", what: [], problems: [] };
    results.push(r);
    const checks = checksFor(kindName, req);
    if (checks.google) { r.status = "google"; r.what.push("check_google.py"); continue; }
    if (checks.none) { r.status = "none"; r.what.push(checks.none); continue; }
    if (checks.error) { r.problems.push(checks.error); continue; }
    for (const c of checks) {
      if (c.kind === "ts") {
        const value = c.value === undefined ? req.body : c.value;
        ts.push({ ...c, value, name, prefix: c.at, result: r });
        r.what.push(c.type);
      } else if (c.kind === "rc-ajv") {
        const validate = rcValidators[c.validator];
        // The validator coerces as the server does; check a copy.
        if (!validate(structuredClone(req.body))) {
          r.problems.push(...validate.errors.map((e) => `${e.instancePath || "/"}: rest-typings ${c.validator}: ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`));
        }
        r.what.push(`rest-typings ${c.validator}`);
      } else {
        r.problems.push(...adaptiveProblems(c.card, c.at, c.host));
        r.what.push(`adaptivecards ${c.host}`);
      }
    }
  }
  if (ts.length) {
    const problems = runTsc(ts);
    ts.forEach((c, i) => c.result.problems.push(...(problems[i] || [])));
  }
  for (const r of results) if (r.problems.length) r.status = "FAIL";
  return results;
}

function readRequests(args) {
  const files = args.flatMap((a) =>
    fs.statSync(a).isDirectory()
      ? fs.readdirSync(a).filter((f) => f.endsWith(".json")).sort().map((f) => path.join(a, f))
      : [a],
  );
  return files.map((file) => ({ file, name: path.basename(file), req: JSON.parse(fs.readFileSync(file, "utf8")) }));
}

function print(results) {
  for (const r of results) {
    if (r.status === "FAIL") console.log(`FAIL ${r.name}:\n  ${r.problems.join("\n  ")}`);
    else console.log(`${r.status.padEnd(6)} ${r.name} (${r.what.join(", ")})`);
  }
}

function selfTest() {
  // samples/KIND.valid.NAME.json must pass; samples/KIND.invalid.NAME.json
  // must fail, and every string of its "expect" must be in the problems.
  const requests = readRequests([path.join(here, "samples")]).filter((r) => !r.name.startsWith("googlechat."));
  const results = checkAll(requests);
  const wrong = [];
  results.forEach((r, i) => {
    const { req } = requests[i];
    const valid = r.name.split(".")[1] === "valid";
    if (valid && r.status !== "ok") wrong.push(`${r.name} should pass: ${r.status} ${r.problems.join("; ")}`);
    if (!valid) {
      const all = r.problems.join("\n");
      if (r.status !== "FAIL") wrong.push(`${r.name} should fail but is ${r.status}`);
      for (const e of req.expect || []) if (!all.includes(e)) wrong.push(`${r.name}: no problem mentions ${JSON.stringify(e)}; got:\n  ${all}`);
      if (!(req.expect || []).length) wrong.push(`${r.name}: names no "expect"`);
    }
  });
  const kinds = new Set(results.map((r) => r.name.split(".")[0]));
  for (const k of ["slack", "discord", "mattermost", "rocketchat", "matrix", "lark", "teams", "webex"]) {
    for (const v of ["valid", "invalid"]) {
      if (!results.some((r) => r.name.startsWith(`${k}.${v}.`))) wrong.push(`no samples/${k}.${v}.*.json`);
    }
  }
  print(results);
  if (wrong.length) {
    console.log(`self-test FAILED:\n${wrong.join("\n")}`);
    process.exit(1);
  }
  console.log(`self-test: ${results.length} samples of ${kinds.size} kinds as expected`);
}

const args = process.argv.slice(2);
if (args[0] === "--self-test") selfTest();
else if (args.length) {
  const results = checkAll(readRequests(args));
  print(results);
  if (results.some((r) => r.status === "FAIL")) process.exit(1);
} else {
  console.error("usage: node check.mjs DIR_OR_FILE... | --self-test");
  process.exit(2);
}
