// One topic and its subscriptions (each through servicebus-subscription.bicep).
// Called once per item of servicebus.bicep's `topics`; role assignments are made
// separately by servicebus-topic-roles.bicep.

@description('Topic settings, named as in Microsoft.ServiceBus/namespaces/topics (API 2024-01-01); every one is optional. Durations are ISO 8601. Defaults here: requiresDuplicateDetection true with a PT10M window (the producer\'s outbox relay may re-send after a crash; fixed once the topic exists) and enableBatchedOperations true; the rest keep Azure\'s defaults.')
type topicPropertiesType = {
  defaultMessageTimeToLive: string?
  duplicateDetectionHistoryTimeWindow: string?
  requiresDuplicateDetection: bool?
  maxSizeInMegabytes: int?
  supportOrdering: bool?
  autoDeleteOnIdle: string?
  enableBatchedOperations: bool?
}

@description('A topic: name (1-260 characters), optional properties (topicPropertiesType), subscriptions (each checked against subscriptionType in servicebus-subscription.bicep) and senders (who gets Azure Service Bus Data Sender on this topic: \'producer\', \'consumer\' or a service principal object id; see servicebus-topic-roles.bicep).')
type topicType = {
  name: string
  properties: topicPropertiesType?
  subscriptions: array?
  senders: array?
}

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('The topic to create, with its subscriptions and rules.')
param topic topicType

var topicDefaults = {
  requiresDuplicateDetection: true
  duplicateDetectionHistoryTimeWindow: 'PT10M'
  enableBatchedOperations: true
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topicResource 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: topic.name
  properties: union(topicDefaults, topic.?properties ?? {})
}

// Bicep cannot nest resource loops, and an array's items can only be type-checked where
// a module receives one of them, so each subscription is its own nested deployment.
module subscriptionDeployment 'servicebus-subscription.bicep' = [for item in topic.?subscriptions ?? []: {
  name: 'sbsub-${uniqueString(namespaceName, topic.name, item.name)}'
  params: {
    namespaceName: namespaceName
    topicName: topicResource.name
    subscription: item
  }
}]

output id string = topicResource.id
output name string = topicResource.name
