// Azure Service Bus Data Receiver on ONE topic subscription (never the topic or the
// namespace) for each receiver. Azure supports role assignments at subscription scope
// (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-managed-service-identity#choose-the-resource-scope),
// though the portal cannot create them.

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('Topic of the subscription.')
param topicName string

@description('Subscription the role is scoped to.')
param subscriptionName string

@description('Who receives: names of this template\'s identities (keys of identityPrincipalIds) or service principal object ids.')
param receivers array

@description('Principal (object) ids of this template\'s identities by name.')
param identityPrincipalIds object

@description('Role definition id (GUID) of Azure Service Bus Data Receiver.')
param dataReceiverRoleId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource subscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' existing = {
  parent: topic
  name: subscriptionName
}

resource receiverAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for receiver in receivers: {
  name: guid(subscription.id, identityPrincipalIds[?receiver] ?? receiver, dataReceiverRoleId)
  scope: subscription
  properties: {
    principalId: identityPrincipalIds[?receiver] ?? receiver
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiverRoleId)
  }
}]
