// What scenarios.mjs and topics.mjs share: the client from the command line, the checks,
// and running the selected scenarios into one JSON line on stdout.

import { ServiceBusClient } from "@azure/service-bus";

export const connectionString = process.argv[2];
export const only = new Set(process.argv.slice(3));
export const client = new ServiceBusClient(connectionString, {
  retryOptions: { maxRetries: 0, timeoutInMs: 20000 },
});

export class Failure extends Error {}

export function check(condition, message) {
  if (!condition) throw new Failure(message);
}

export function equal(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: expected ${e}, got ${a}`);
}

// Runs each selected scenario, closes the client, prints
// {"scenarios": {"<name>": {"ok": true} | {"ok": false, "error": "..."}}}.
export async function runScenarios(scenarios) {
  const results = {};
  for (const [name, run] of Object.entries(scenarios)) {
    if (only.size && !only.has(name)) continue;
    try {
      await run();
      results[name] = { ok: true };
    } catch (error) {
      results[name] = { ok: false, error: `${error.name}: ${error.message}`.slice(0, 2000) };
    }
  }
  await client.close();
  process.stdout.write(`${JSON.stringify({ scenarios: results })}\n`);
}
