// Role assignments for one topic (never the namespace): Azure Service Bus Data Sender on
// the topic for each of its senders, and, through servicebus-subscription-roles.bicep,
// Azure Service Bus Data Receiver on each subscription for that subscription's receivers.

@description('Service Bus namespace that holds the topic.')
param namespaceName string

@description('One item of servicebus.bicep\'s `topics` (topicType in servicebus-topic.bicep); reads name, senders and subscriptions[].name / receivers.')
param topic object

@description('Principal (object) ids of this template\'s identities by name, e.g. { producer: \'<id>\', consumer: \'<id>\' }; a sender or receiver that is not a key here is taken as a principal object id itself.')
param identityPrincipalIds object

@description('Role definition id (GUID) of Azure Service Bus Data Sender.')
param dataSenderRoleId string

@description('Role definition id (GUID) of Azure Service Bus Data Receiver.')
param dataReceiverRoleId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource topicResource 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topic.name
}

resource senderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for sender in topic.?senders ?? []: {
  name: guid(topicResource.id, identityPrincipalIds[?sender] ?? sender, dataSenderRoleId)
  scope: topicResource
  properties: {
    principalId: identityPrincipalIds[?sender] ?? sender
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSenderRoleId)
  }
}]

module subscriptionRoles 'servicebus-subscription-roles.bicep' = [for item in topic.?subscriptions ?? []: {
  name: 'rbac-sbsub-${uniqueString(namespaceName, topic.name, item.name)}'
  params: {
    namespaceName: namespaceName
    topicName: topicResource.name
    subscriptionName: item.name
    receivers: item.?receivers ?? []
    identityPrincipalIds: identityPrincipalIds
    dataReceiverRoleId: dataReceiverRoleId
  }
}]
