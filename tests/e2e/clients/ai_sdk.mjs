// The Vercel AI SDK through the gateway, as an application would use it. One run, one JSON line out:
//   node ai_sdk.mjs <openai-chat|openai-responses|anthropic> <plain|stream|tools> <gateway URL> <model> <prompt>
// "tools" offers a get_weather function tool and lets the SDK run the loop (call, execute, answer).
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [flavour, mode, baseUrl, modelName, prompt] = process.argv.slice(2);

function model() {
  const options = { baseURL: `${baseUrl}/v1`, apiKey: "x" };
  if (flavour === "anthropic") return createAnthropic(options)(modelName);
  const openai = createOpenAI(options);
  if (flavour === "openai-chat") return openai.chat(modelName);
  if (flavour === "openai-responses") return openai.responses(modelName);
  throw new Error(`unknown flavour ${flavour}`);
}

const executed = [];
const tools = {
  get_weather: tool({
    description: "Get the current weather for a city.",
    inputSchema: z.object({ city: z.string().describe("The city") }),
    execute: async ({ city }) => {
      executed.push(city);
      return { city, temperature_c: 21, sky: "sunny" };
    },
  }),
};

const request = { model: model(), prompt, tools, maxOutputTokens: 1024, stopWhen: stepCountIs(4) };
let out;
if (mode === "stream") {
  const result = streamText(request);
  const chunks = [];
  for await (const delta of result.textStream) chunks.push(delta);
  const steps = await result.steps;
  out = { text: chunks.join(""), chunks: chunks.length, steps: steps.length,
          toolCalls: steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)) };
} else {
  const result = await generateText(request);
  out = { text: result.text, chunks: 0, steps: result.steps.length,
          toolCalls: result.steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)) };
}
out.executed = executed;
process.stdout.write(JSON.stringify(out) + "\n");
