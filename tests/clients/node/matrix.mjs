// The Node clients of the client matrix, one scenario per run: `node matrix.mjs <scenario>` with TOLLWAY_BASE_URL
// (…/v1) and TOLLWAY_API_KEY set; prints one JSON line with what the client saw (text and usage).
import OpenAI from "openai";
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const baseURL = process.env.TOLLWAY_BASE_URL;
const apiKey = process.env.TOLLWAY_API_KEY;
const messages = [{ role: "user", content: "Hello from Node" }];

const scenarios = {
  async "openai-chat"() {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const reply = await client.chat.completions.create({ model: "echo", messages });
    return { text: reply.choices[0].message.content, input: reply.usage.prompt_tokens, output: reply.usage.completion_tokens };
  },
  async "openai-stream"() {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "echo", messages, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices.map((c) => c.delta.content ?? "").join("");
      usage = chunk.usage ?? usage;
    }
    return { text, input: usage.prompt_tokens, output: usage.completion_tokens };
  },
  async "ai-chat"() {
    const provider = createOpenAI({ baseURL, apiKey });
    const result = await generateText({ model: provider.chat("echo"), prompt: "Hello from Node", maxRetries: 0 });
    return { text: result.text, input: result.usage.inputTokens, output: result.usage.outputTokens };
  },
  async "ai-stream-responses"() {
    const provider = createOpenAI({ baseURL, apiKey });
    const result = streamText({ model: provider.responses("echo"), prompt: "Hello from Node", maxRetries: 0 });
    let text = "";
    for await (const part of result.textStream) text += part;
    const usage = await result.usage;
    return { text, input: usage.inputTokens, output: usage.outputTokens };
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
console.log(JSON.stringify(await scenarios[name]()));
