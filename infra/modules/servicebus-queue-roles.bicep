// Role assignments on ONE queue (never the namespace) for one principal.

@description('Service Bus namespace that holds the queue.')
param namespaceName string

@description('Queue the roles are scoped to.')
param queueName string

@description('Object (principal) id of the managed identity that gets the roles.')
param principalId string

@description('Built-in role definition ids (GUIDs) to assign on the queue.')
param roleDefinitionIds array

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: queueName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in roleDefinitionIds: {
  name: guid(queue.id, principalId, roleId)
  scope: queue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}]
