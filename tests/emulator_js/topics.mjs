// Topic, rule and administration scenarios through the JavaScript SDK (@azure/service-bus):
// fan-out, a SQL filter, a correlation filter, and ServiceBusAdministrationClient over HTTPS
// on the emulator's AMQP port.
//
// Usage: NODE_EXTRA_CA_CERTS=<emulator certificate> node topics.mjs "<connection string>" [scenario ...]
// Prints one JSON line: {"scenarios": {"<name>": {"ok": true} | {"ok": false, "error": "..."}}}
// Entities it expects (tests/emulator/test_js_sdk.py configures them): topic js-fanout with
// subscriptions a, b, c ($Default rule); topic js-filtered with subscriptions all ($Default),
// high (SQL filter "priority > 5 AND color = 'red'") and email (correlation filter
// Subject "notification", application property channel = "email").

import { ServiceBusAdministrationClient, isServiceBusError } from "@azure/service-bus";
import { Failure, check, client, connectionString, equal, runScenarios } from "./harness.mjs";

// Receives exactly `count` messages from a subscription, completes them, and checks that no
// more arrive; returns the bodies in delivery order.
async function drain(topic, subscription, count) {
  const receiver = client.createReceiver(topic, subscription);
  try {
    const received = [];
    const deadline = Date.now() + 10000;
    while (received.length < count) {
      const left = deadline - Date.now();
      check(left > 0, `${topic}/${subscription}: received ${received.length} of ${count}`);
      const batch = await receiver.receiveMessages(count - received.length, {
        maxWaitTimeInMs: Math.min(left, 1000),
      });
      received.push(...batch);
    }
    for (const message of received) await receiver.completeMessage(message);
    const extra = await receiver.receiveMessages(10, { maxWaitTimeInMs: 500 });
    equal(extra.map((m) => m.body), [], `${topic}/${subscription}: unexpected messages`);
    return received.map((m) => m.body);
  } finally {
    await receiver.close();
  }
}

async function send(topic, messages) {
  const sender = client.createSender(topic);
  try {
    const batch = await sender.createMessageBatch();
    for (const message of messages) check(batch.tryAddMessage(message), "batch full");
    await sender.sendMessages(batch);
  } finally {
    await sender.close();
  }
}

async function expectNotFound(promise, what) {
  try {
    await promise;
  } catch (error) {
    const code = isServiceBusError(error) ? error.code : error.code ?? error.name;
    check(code === "MessageEntityNotFoundError" || code === "MessagingEntityNotFound" || error.statusCode === 404,
      `${what}: expected not found, got ${code}: ${error.message}`);
    return;
  }
  throw new Failure(`${what}: expected not found, but it succeeded`);
}

const scenarios = {
  async fan_out_to_every_subscription() {
    await send("js-fanout", [{ body: "e1" }, { body: "e2" }, { body: "e3" }]);
    for (const subscription of ["a", "b", "c"]) {
      equal(await drain("js-fanout", subscription, 3), ["e1", "e2", "e3"], subscription);
    }
  },

  async sql_filter_selects_matching_messages() {
    await send("js-filtered", [
      { body: "red-9", applicationProperties: { priority: 9, color: "red" } },
      { body: "red-1", applicationProperties: { priority: 1, color: "red" } },
      { body: "blue-9", applicationProperties: { priority: 9, color: "blue" } },
      { body: "none" },
    ]);
    equal(await drain("js-filtered", "high", 1), ["red-9"], "SQL-filtered subscription");
    equal(await drain("js-filtered", "all", 4), ["red-9", "red-1", "blue-9", "none"], "$Default");
    equal(await drain("js-filtered", "email", 0), [], "correlation-filtered subscription");
  },

  async correlation_filter_selects_matching_messages() {
    await send("js-filtered", [
      { body: "mail", subject: "notification", applicationProperties: { channel: "email" } },
      { body: "sms", subject: "notification", applicationProperties: { channel: "sms" } },
      { body: "other", subject: "audit", applicationProperties: { channel: "email" } },
    ]);
    equal(await drain("js-filtered", "email", 1), ["mail"], "correlation-filtered subscription");
    equal(await drain("js-filtered", "all", 3), ["mail", "sms", "other"], "$Default");
    equal(await drain("js-filtered", "high", 0), [], "SQL-filtered subscription");
  },

  async administration_client() {
    const admin = new ServiceBusAdministrationClient(connectionString);
    const queue = await admin.createQueue("js-admin-queue", { maxDeliveryCount: 3 });
    equal([queue.name, queue.maxDeliveryCount], ["js-admin-queue", 3], "created queue");
    check(await admin.queueExists("js-admin-queue"), "queue exists");
    await admin.createTopic("js-admin-topic");
    await admin.createSubscription("js-admin-topic", "js-admin-sub");
    await admin.deleteRule("js-admin-topic", "js-admin-sub", "$Default");
    const rule = await admin.createRule("js-admin-topic", "js-admin-sub", "urgent", {
      sqlExpression: "urgent = true",
    });
    equal([rule.name, rule.filter.sqlExpression], ["urgent", "urgent = true"], "created rule");
    const rules = [];
    for await (const item of admin.listRules("js-admin-topic", "js-admin-sub")) rules.push(item.name);
    equal(rules, ["urgent"], "rules");

    // Entities created at run time carry messages like configured ones.
    await send("js-admin-queue", [{ body: "q1" }, { body: "q2" }]);
    await send("js-admin-topic", [
      { body: "yes", applicationProperties: { urgent: true } },
      { body: "no", applicationProperties: { urgent: false } },
    ]);
    const queueRuntime = await admin.getQueueRuntimeProperties("js-admin-queue");
    equal(
      [queueRuntime.activeMessageCount, queueRuntime.deadLetterMessageCount, queueRuntime.scheduledMessageCount],
      [2, 0, 0],
      "queue runtime properties",
    );
    const subRuntime = await admin.getSubscriptionRuntimeProperties("js-admin-topic", "js-admin-sub");
    equal([subRuntime.activeMessageCount, subRuntime.totalMessageCount], [1, 1], "subscription runtime");
    const topicRuntime = await admin.getTopicRuntimeProperties("js-admin-topic");
    equal(topicRuntime.subscriptionCount, 1, "topic subscription count");
    equal(await drain("js-admin-topic", "js-admin-sub", 1), ["yes"], "rule created at run time");

    await admin.deleteRule("js-admin-topic", "js-admin-sub", "urgent");
    await admin.deleteSubscription("js-admin-topic", "js-admin-sub");
    await admin.deleteTopic("js-admin-topic");
    await admin.deleteQueue("js-admin-queue");
    check(!(await admin.queueExists("js-admin-queue")), "queue deleted");
    check(!(await admin.topicExists("js-admin-topic")), "topic deleted");
    await expectNotFound(admin.getQueue("js-admin-queue"), "get deleted queue");
  },
};

await runScenarios(scenarios);
