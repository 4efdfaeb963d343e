// Conformance scenarios for the emulator, run through the JavaScript SDK (@azure/service-bus,
// on rhea) so that the emulator is checked against a second, independent AMQP client.
//
// Usage: node scenarios.mjs "<connection string>" [scenario ...]
// Prints one JSON line: {"scenarios": {"<name>": {"ok": true} | {"ok": false, "error": "..."}}}
// Queues it expects (tests/emulator/test_js_sdk.py configures them): js-basic, js-dlq,
// js-mdc (MaxDeliveryCount 2), js-schedule, js-defer, js-peek, js-rad, js-props,
// js-sessions (RequiresSession), js-short (LockDuration PT1S), js-ttl
// (DeadLetteringOnMessageExpiration).

import { isServiceBusError } from "@azure/service-bus";
import { Failure, check, client, equal, runScenarios } from "./harness.mjs";
import Long from "long";

async function receive(receiver, count, withinMs = 10000) {
  const received = [];
  const deadline = Date.now() + withinMs;
  while (received.length < count) {
    const left = deadline - Date.now();
    check(left > 0, `received ${received.length} of ${count} messages`);
    const batch = await receiver.receiveMessages(count - received.length, {
      maxWaitTimeInMs: Math.min(left, 1000),
    });
    received.push(...batch);
  }
  return received;
}

async function receiveNone(receiver, waitMs = 500) {
  const batch = await receiver.receiveMessages(10, { maxWaitTimeInMs: waitMs });
  equal(batch.map((m) => m.body), [], "unexpected messages");
}

async function expectError(promise, code, what, messagePart = "") {
  try {
    await promise;
  } catch (error) {
    const actual = isServiceBusError(error) ? error.code : `${error.name}: ${error.message}`;
    check(actual === code, `${what}: expected error code ${code}, got ${actual}`);
    check(error.message.includes(messagePart), `${what}: message ${error.message}`);
    return error;
  }
  throw new Failure(`${what}: expected error code ${code}, but it succeeded`);
}

async function withReceiver(queue, options, action) {
  const receiver = client.createReceiver(queue, options);
  try {
    return await action(receiver);
  } finally {
    await receiver.close();
  }
}

async function send(queue, messages) {
  const sender = client.createSender(queue);
  try {
    await sender.sendMessages(messages);
  } finally {
    await sender.close();
  }
}

const scenarios = {
  async send_receive_complete() {
    const sender = client.createSender("js-basic");
    const batch = await sender.createMessageBatch();
    check(batch.maxSizeInBytes === 256 * 1024, `batch size ${batch.maxSizeInBytes}`);
    for (const body of ["one", "two"]) check(batch.tryAddMessage({ body }), "batch full");
    await sender.sendMessages(batch);
    await sender.sendMessages({ body: "three", messageId: "id-3" });
    await sender.close();
    await withReceiver("js-basic", {}, async (receiver) => {
      const messages = await receive(receiver, 3);
      equal(messages.map((m) => m.body), ["one", "two", "three"], "bodies");
      equal(messages.map((m) => Number(m.sequenceNumber)), [1, 2, 3], "sequence numbers");
      equal(messages.map((m) => m.deliveryCount), [0, 0, 0], "delivery counts");
      check(messages.every((m) => m.messageId), "every message has a message id");
      equal(messages[2].messageId, "id-3", "message id");
      check(messages.every((m) => m.lockedUntilUtc instanceof Date), "locked until");
      check(messages.every((m) => m.enqueuedTimeUtc instanceof Date), "enqueued time");
      const before = messages[0].lockedUntilUtc.getTime();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const renewed = await receiver.renewMessageLock(messages[0]);
      check(renewed.getTime() > before, "renew-lock moved the lock");
      for (const message of messages) await receiver.completeMessage(message);
      equal((await receiver.peekMessages(10)).length, 0, "queue empty after complete");
    });
  },

  async abandon_counts_a_delivery() {
    await send("js-basic", { body: "retry" });
    await withReceiver("js-basic", {}, async (receiver) => {
      const [first] = await receive(receiver, 1);
      equal(first.deliveryCount, 0, "first delivery count");
      await receiver.abandonMessage(first);
      const [second] = await receive(receiver, 1);
      equal([second.body, second.deliveryCount], ["retry", 1], "abandoned message");
      await receiver.completeMessage(second);
    });
  },

  async dead_letter_and_dlq() {
    await send("js-dlq", { body: "poison" });
    await withReceiver("js-dlq", {}, async (receiver) => {
      const [message] = await receive(receiver, 1);
      await receiver.deadLetterMessage(message, {
        deadLetterReason: "Invalid",
        deadLetterErrorDescription: "missing field",
      });
      await receiveNone(receiver, 300);
    });
    await withReceiver("js-dlq", { subQueueType: "deadLetter" }, async (dlq) => {
      const [dead] = await receive(dlq, 1);
      equal(
        [dead.body, dead.deadLetterReason, dead.deadLetterErrorDescription],
        ["poison", "Invalid", "missing field"],
        "dead-lettered message",
      );
      equal(Number(dead.sequenceNumber), 1, "sequence number kept in the DLQ");
      await dlq.completeMessage(dead);
      equal((await dlq.peekMessages(10)).length, 0, "DLQ empty");
    });
  },

  async max_delivery_count_dead_letters() {
    await send("js-mdc", { body: "never works" });
    await withReceiver("js-mdc", {}, async (receiver) => {
      for (let i = 0; i < 2; i += 1) {
        const [message] = await receive(receiver, 1);
        await receiver.abandonMessage(message);
      }
      await receiveNone(receiver, 300);
    });
    await withReceiver("js-mdc", { subQueueType: "deadLetter" }, async (dlq) => {
      const [dead] = await receive(dlq, 1);
      equal(dead.deadLetterReason, "MaxDeliveryCountExceeded", "reason");
      equal(dead.deliveryCount, 2, "delivery count");
      await dlq.completeMessage(dead);
    });
  },

  async schedule_and_cancel() {
    const sender = client.createSender("js-schedule");
    const at = new Date(Date.now() + 1500);
    const [kept] = await sender.scheduleMessages({ body: "later" }, at);
    const [cancelled] = await sender.scheduleMessages(
      { body: "never" },
      new Date(Date.now() + 3600_000),
    );
    check(Number(cancelled) > Number(kept), "scheduled sequence numbers increase");
    await sender.cancelScheduledMessages([cancelled]);
    await sender.close();
    await withReceiver("js-schedule", {}, async (receiver) => {
      const peeked = await receiver.peekMessages(10);
      equal(peeked.map((m) => [m.body, m.state]), [["later", "scheduled"]], "peeked");
      const [message] = await receive(receiver, 1, 15000);
      equal(message.body, "later", "scheduled body");
      check(Date.now() >= at.getTime() - 50, "delivered no earlier than scheduled");
      equal(Number(message.sequenceNumber), Number(kept), "sequence number");
      await receiver.completeMessage(message);
    });
  },

  async defer_and_receive_deferred() {
    await send("js-defer", [{ body: "second" }, { body: "first" }]);
    await withReceiver("js-defer", {}, async (receiver) => {
      const [second, first] = await receive(receiver, 2);
      await receiver.deferMessage(second);
      await receiver.completeMessage(first);
      await receiveNone(receiver, 300);
      const [deferred] = await receiver.receiveDeferredMessages([second.sequenceNumber]);
      equal([deferred.body, deferred.state], ["second", "deferred"], "deferred message");
      await receiver.completeMessage(deferred);
      equal((await receiver.peekMessages(10)).length, 0, "queue empty");
    });
  },

  async peek_does_not_lock() {
    await send("js-peek", [{ body: "a" }, { body: "b" }, { body: "c" }]);
    await withReceiver("js-peek", {}, async (receiver) => {
      const firstTwo = await receiver.peekMessages(2, { fromSequenceNumber: Long.fromNumber(1) });
      equal(firstTwo.map((m) => m.body), ["a", "b"], "first two");
      const lastOne = await receiver.peekMessages(10, { fromSequenceNumber: Long.fromNumber(3) });
      equal(lastOne.map((m) => m.body), ["c"], "from 3");
      const received = await receive(receiver, 3);
      equal(received.map((m) => m.deliveryCount), [0, 0, 0], "peeking locked nothing");
      for (const message of received) await receiver.completeMessage(message);
    });
  },

  async receive_and_delete() {
    await send("js-rad", [{ body: "x" }, { body: "y" }]);
    await withReceiver("js-rad", { receiveMode: "receiveAndDelete" }, async (receiver) => {
      const messages = await receive(receiver, 2);
      equal(messages.map((m) => m.body), ["x", "y"], "bodies");
      equal((await receiver.peekMessages(10)).length, 0, "removed on delivery");
    });
  },

  async properties_round_trip() {
    const when = new Date("2024-05-06T07:08:09.123Z");
    await send("js-props", [
      {
        body: { nested: [1, "two", true] },
        messageId: "mid",
        correlationId: "cid",
        subject: "subject",
        contentType: "application/json",
        replyTo: "replies",
        replyToSessionId: "reply-session",
        to: "destination",
        timeToLive: 3600_000,
        applicationProperties: { s: "text", n: 42, f: 1.5, b: true, d: when },
      },
      { body: Buffer.from([0, 1, 2, 255]) },
      { body: [[1, "a"], [2, "b"]], bodyType: "sequence" },
    ]);
    await withReceiver("js-props", {}, async (receiver) => {
      const [json, binary, sequence] = await receive(receiver, 3);
      equal(json.body, { nested: [1, "two", true] }, "value body");
      equal(
        [json.messageId, json.correlationId, json.subject, json.contentType],
        ["mid", "cid", "subject", "application/json"],
        "properties",
      );
      equal([json.replyTo, json.replyToSessionId, json.to], ["replies", "reply-session", "destination"], "routing");
      equal(json.timeToLive, 3600_000, "time to live");
      equal(json.expiresAtUtc.getTime() - json.enqueuedTimeUtc.getTime(), 3600_000, "expiry");
      const props = json.applicationProperties;
      equal([props.s, props.n, props.f, props.b], ["text", 42, 1.5, true], "application properties");
      equal(new Date(props.d).getTime(), when.getTime(), "date property");
      equal([...binary.body], [0, 1, 2, 255], "binary body");
      equal(sequence.body, [[1, "a"], [2, "b"]], "sequence body");
      for (const message of [json, binary, sequence]) await receiver.completeMessage(message);
    });
  },

  async sessions() {
    await send("js-sessions", [
      { body: "a1", sessionId: "a" },
      { body: "b1", sessionId: "b" },
      { body: "a2", sessionId: "a" },
    ]);
    const a = await client.acceptSession("js-sessions", "a", { maxAutoLockRenewalDurationInMs: 0 });
    try {
      equal(a.sessionId, "a", "session id");
      check(a.sessionLockedUntilUtc instanceof Date, "session locked until");
      await expectError(
        client.acceptSession("js-sessions", "a", { maxAutoLockRenewalDurationInMs: 0 }),
        "SessionCannotBeLocked",
        "second receiver for a locked session",
      );
      const messages = await receive(a, 2);
      equal(messages.map((m) => m.body), ["a1", "a2"], "in order within the session");
      await a.setSessionState("checkpoint");
      equal(String(await a.getSessionState()), "checkpoint", "session state");
      const before = a.sessionLockedUntilUtc.getTime();
      await new Promise((resolve) => setTimeout(resolve, 20));
      await a.renewSessionLock();
      check(a.sessionLockedUntilUtc.getTime() > before, "session lock renewed");
      for (const message of messages) await a.completeMessage(message);
    } finally {
      await a.close();
    }
    const next = await client.acceptNextSession("js-sessions", { maxAutoLockRenewalDurationInMs: 0 });
    try {
      equal(next.sessionId, "b", "next available session");
      const [b1] = await receive(next, 1);
      equal(b1.body, "b1", "session b");
      await next.completeMessage(b1);
    } finally {
      await next.close();
    }
    const sender = client.createSender("js-sessions");
    try {
      await expectError(
        sender.sendMessages({ body: "no session" }),
        "GeneralError", // amqp:not-allowed, the JS SDK's InvalidOperationError
        "sending without a session id",
        "SessionId",
      );
    } finally {
      await sender.close();
    }
  },

  async expired_lock_is_lost_and_redelivered() {
    await send("js-short", { body: "slow" });
    // The SDK renews message locks by itself unless told not to.
    await withReceiver("js-short", { maxAutoLockRenewalDurationInMs: 0 }, async (receiver) => {
      const [first] = await receive(receiver, 1);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the lock is 1 s
      await expectError(receiver.completeMessage(first), "MessageLockLost", "late complete");
      const [again] = await receive(receiver, 1);
      equal([again.body, again.deliveryCount], ["slow", 1], "redelivered");
      await receiver.completeMessage(again);
    });
  },

  async auto_lock_renewal_keeps_the_lock() {
    await send("js-short", { body: "long job" });
    await withReceiver("js-short", {}, async (receiver) => {
      const [message] = await receive(receiver, 1);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // renew-lock keeps it
      await receiver.completeMessage(message);
      equal((await receiver.peekMessages(10)).length, 0, "completed");
    });
  },

  async ttl_expiry_dead_letters() {
    await send("js-ttl", { body: "short-lived", timeToLive: 500 });
    await withReceiver("js-ttl", { subQueueType: "deadLetter" }, async (dlq) => {
      const [dead] = await receive(dlq, 1);
      equal([dead.body, dead.deadLetterReason], ["short-lived", "TTLExpiredException"], "expired");
      await dlq.completeMessage(dead);
    });
  },

  async unknown_queue_is_not_found() {
    const sender = client.createSender("js-no-such-queue");
    try {
      await expectError(sender.sendMessages({ body: "x" }), "MessagingEntityNotFound", "send");
    } finally {
      await sender.close();
    }
  },
};

await runScenarios(scenarios);
