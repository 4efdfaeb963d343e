// User-assigned managed identities: one per workload (producer, consumer, console), one
// for the KEDA scaler, one for image pulls. Separate identities keep each one's role
// assignments minimal.

@description('Region of the identities.')
param location string

@description('Tags for the identities.')
param tags object

@description('Producer workload identity (sends to the queues).')
param producerName string

@description('Consumer workload identity (receives from and re-sends to the queues).')
param consumerName string

@description('Console workload identity (peeks, replays and purges dead letters on the queues).')
param consoleName string

@description('Identity the consumer\'s KEDA scale rules use to read queue message counts.')
param scalerName string

@description('Identity the apps use to pull images from the registry.')
param acrPullName string

resource producer 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: producerName
  location: location
  tags: tags
}

resource consumer 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: consumerName
  location: location
  tags: tags
}

resource console 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: consoleName
  location: location
  tags: tags
}

resource scaler 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: scalerName
  location: location
  tags: tags
}

resource acrPull 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: acrPullName
  location: location
  tags: tags
}

output producerId string = producer.id
output producerPrincipalId string = producer.properties.principalId
output producerClientId string = producer.properties.clientId
output consumerId string = consumer.id
output consumerPrincipalId string = consumer.properties.principalId
output consumerClientId string = consumer.properties.clientId
output consoleId string = console.id
output consolePrincipalId string = console.properties.principalId
output consoleClientId string = console.properties.clientId
output scalerId string = scaler.id
output scalerPrincipalId string = scaler.properties.principalId
output acrPullId string = acrPull.id
output acrPullPrincipalId string = acrPull.properties.principalId
