// The fast upstream every gateway in `make bench-peers` talks to: an
// OpenAI-compatible /chat/completions (any prefix) that answers at once
// with a fixed completion, or, when the body asks for `"stream": true`, a
// fixed SSE stream of five chunks ending with a usage chunk and [DONE].
// Prints its URL on stdout. Usage: node mock.mjs [port]
import http from "node:http";

const completion = Buffer.from(JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1764720000,
  model: "gpt-4.1-mini",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "One endpoint, every model, fewer outages." },
    finish_reason: "stop",
  }],
  usage: { prompt_tokens: 31, completion_tokens: 9, total_tokens: 40 },
}));

const chunk = (delta, finish) => `data: ${JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion.chunk",
  created: 1764720000,
  model: "gpt-4.1-mini",
  choices: [{ index: 0, delta, finish_reason: finish }],
})}\n\n`;
const stream = Buffer.from(
  chunk({ role: "assistant", content: "" }, null) +
  chunk({ content: "One endpoint, " }, null) +
  chunk({ content: "every model, " }, null) +
  chunk({ content: "fewer outages." }, null) +
  chunk({}, "stop") +
  `data: ${JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1764720000,
    model: "gpt-4.1-mini",
    choices: [],
    usage: { prompt_tokens: 31, completion_tokens: 9, total_tokens: 40 },
  })}\n\n` +
  "data: [DONE]\n\n",
);

const wantsStream = /"stream"\s*:\s*true/;

const server = http.createServer((req, res) => {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
      return;
    }
    if (wantsStream.test(Buffer.concat(parts).toString())) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.end(stream);
    } else {
      res.writeHead(200, { "content-type": "application/json", "content-length": completion.length });
      res.end(completion);
    }
  });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
