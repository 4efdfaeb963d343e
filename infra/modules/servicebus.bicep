// Service Bus namespace (Entra ID only, TLS 1.2+), the project's queues and, when
// declared, topics with their subscriptions and rules.

@description('Region of the namespace.')
param location string

@description('Tags for the namespace.')
param tags object

@description('Namespace name (globally unique).')
param name string

@allowed([
  'Standard'
  'Premium'
])
@description('Standard: shared capacity, billed per operation. Premium: dedicated messaging units.')
param sku string = 'Standard'

@allowed([
  1
  2
  4
  8
  16
])
@description('Messaging units; used only for Premium.')
param premiumMessagingUnits int = 1

@description('Queues to create: objects with name, lockDuration, maxDeliveryCount, deadLetteringOnMessageExpiration, requiresDuplicateDetection, duplicateDetectionHistoryTimeWindow, defaultMessageTimeToLive and requiresSession.')
param queues array

@description('Topics to create; default none. Each item is a topicType (servicebus-topic.bicep): { name, properties?, senders?, subscriptions?: [ subscriptionType (servicebus-subscription.bicep): { name, properties?, receivers?, rules?: [ ruleType (servicebus-rule.bicep): { name, sqlFilter? | correlationFilter?, action? } ] } ] }. Each item is checked against its type where its module receives it. senders and receivers are read by the role modules, not here.')
param topics array = []

@description('Log Analytics workspace that receives the namespace diagnostic logs.')
param logAnalyticsWorkspaceId string

var isPremium = sku == 'Premium'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: isPremium ? {
    name: 'Premium'
    tier: 'Premium'
    capacity: premiumMessagingUnits
  } : {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Shared access signatures (connection strings with keys) are rejected; every
    // client authenticates with Microsoft Entra ID.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for q in queues: {
  parent: namespace
  name: q.name
  properties: {
    lockDuration: q.lockDuration
    maxDeliveryCount: q.maxDeliveryCount
    deadLetteringOnMessageExpiration: q.deadLetteringOnMessageExpiration
    requiresDuplicateDetection: q.requiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: q.duplicateDetectionHistoryTimeWindow
    defaultMessageTimeToLive: q.defaultMessageTimeToLive
    requiresSession: q.requiresSession
    enableBatchedOperations: true
  }
}]

// One nested deployment per topic (it creates the subscriptions and rules in turn). After
// the queues and one topic at a time, so that forwardTo / forwardDeadLetteredMessagesTo can
// name a queue or a topic listed earlier.
@batchSize(1)
module topicDeployment 'servicebus-topic.bicep' = [for item in topics: {
  name: 'sbtopic-${uniqueString(name, item.name)}'
  dependsOn: [
    queue
  ]
  params: {
    namespaceName: namespace.name
    topic: item
  }
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = namespace.id
output name string = namespace.name
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (suffix differs in
// sovereign clouds); the SDK wants the bare host name.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
