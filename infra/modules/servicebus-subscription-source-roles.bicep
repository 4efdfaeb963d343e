// Role assignments for a consumer source that is a topic subscription, each scoped to one
// entity (never the namespace):
// * the consumer identity: Azure Service Bus Data Receiver on the subscription (receive
//   and settle), and Azure Service Bus Data Sender on its topic: `consumer dlq replay`
//   sends a subscription's dead letters back through the topic, since Service Bus cannot
//   send to a subscription;
// * the KEDA scaler identity: Azure Service Bus Data Owner on the subscription: the
//   azure-servicebus scaler reads its message count with GetSubscriptionRuntimeProperties,
//   which needs the Manage claim (the reason in full is in main.bicep, above
//   scalerQueueRoles).
// Names are guid(entity id, principal, role) as in servicebus-topic-roles.bicep and
// servicebus-subscription-roles.bicep: the same grant also listed in serviceBusTopics (the
// subscription's receivers, the topic's senders) is the same assignment, not a second one
// that ARM would refuse.

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('The subscription, as CONSUMER_AUDIT_SUBSCRIPTION takes it: <topic>/Subscriptions/<subscription>.')
param subscriptionPath string

@description('Object (principal) id of the consumer identity.')
param consumerPrincipalId string

@description('Object (principal) id of the KEDA scaler identity.')
param scalerPrincipalId string

@description('Role definition id (GUID) of Azure Service Bus Data Receiver.')
param dataReceiverRoleId string

@description('Role definition id (GUID) of Azure Service Bus Data Sender.')
param dataSenderRoleId string

@description('Role definition id (GUID) of Azure Service Bus Data Owner.')
param dataOwnerRoleId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: first(split(subscriptionPath, '/'))
}

resource subscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' existing = {
  parent: topic
  name: last(split(subscriptionPath, '/'))
}

var subscriptionGrants = [
  {
    principalId: consumerPrincipalId
    roleId: dataReceiverRoleId
  }
  {
    principalId: scalerPrincipalId
    roleId: dataOwnerRoleId
  }
]

resource subscriptionAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for grant in subscriptionGrants: {
  name: guid(subscription.id, grant.principalId, grant.roleId)
  scope: subscription
  properties: {
    principalId: grant.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.roleId)
  }
}]

resource topicAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, consumerPrincipalId, dataSenderRoleId)
  scope: topic
  properties: {
    principalId: consumerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSenderRoleId)
  }
}
