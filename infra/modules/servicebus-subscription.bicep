// One topic subscription and its rules (each through servicebus-rule.bicep).

@description('Subscription settings, named as in Microsoft.ServiceBus/namespaces/topics/subscriptions (API 2024-01-01); every one is optional. Durations are ISO 8601. forwardTo and forwardDeadLetteredMessagesTo name a queue, or a topic listed earlier in `topics`, of the same namespace. requiresSession is fixed once the subscription exists. Defaults here, as for the project\'s queues: lockDuration PT1M, maxDeliveryCount 10, deadLetteringOnMessageExpiration true, deadLetteringOnFilterEvaluationExceptions true, enableBatchedOperations true.')
type subscriptionPropertiesType = {
  lockDuration: string?
  maxDeliveryCount: int?
  requiresSession: bool?
  forwardTo: string?
  forwardDeadLetteredMessagesTo: string?
  deadLetteringOnFilterEvaluationExceptions: bool?
  deadLetteringOnMessageExpiration: bool?
  defaultMessageTimeToLive: string?
  autoDeleteOnIdle: string?
  enableBatchedOperations: bool?
}

@description('A subscription: name (1-50 characters), optional properties (subscriptionPropertiesType), rules (each checked against ruleType in servicebus-rule.bicep; none: every message of the topic) and receivers (who gets Azure Service Bus Data Receiver on this subscription: \'producer\', \'consumer\' or a service principal object id; see servicebus-subscription-roles.bicep).')
type subscriptionType = {
  name: string
  properties: subscriptionPropertiesType?
  rules: array?
  receivers: array?
}

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('Topic the subscription belongs to.')
param topicName string

@description('The subscription to create, with its rules.')
param subscription subscriptionType

var subscriptionDefaults = {
  lockDuration: 'PT1M'
  maxDeliveryCount: 10
  deadLetteringOnMessageExpiration: true
  deadLetteringOnFilterEvaluationExceptions: true
  enableBatchedOperations: true
}
var rules = subscription.?rules ?? []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource subscriptionResource 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: subscription.name
  properties: union(subscriptionDefaults, subscription.?properties ?? {})
}

// Azure gives every new subscription a `$Default` rule (1=1), and a message enters when
// any rule matches, so declared rules alone would still let everything in. When rules are
// declared (and none of them is `$Default` itself), `$Default` becomes a false filter:
// only the declared rules select, as in the emulator, which adds `$Default` only to a
// subscription without rules.
resource defaultRule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = if (empty(filter(rules, declared => declared.name == '$Default')) && !empty(rules)) {
  parent: subscriptionResource
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '1=0'
    }
  }
}

// One nested deployment per rule, so that each is checked against ruleType.
module ruleDeployment 'servicebus-rule.bicep' = [for item in rules: {
  name: 'sbrule-${uniqueString(namespaceName, topicName, subscription.name, item.name)}'
  params: {
    namespaceName: namespaceName
    topicName: topicName
    subscriptionName: subscriptionResource.name
    rule: item
  }
}]

output id string = subscriptionResource.id
output name string = subscriptionResource.name
