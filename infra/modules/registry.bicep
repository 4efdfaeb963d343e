// Azure Container Registry. No admin user and no anonymous pull: the apps pull with a
// managed identity (AcrPull), the pipeline pushes with its service connection (AcrPush).

@description('Region of the registry.')
param location string

@description('Tags for the registry.')
param tags object

@minLength(5)
@maxLength(50)
@description('Registry name (globally unique, alphanumeric).')
param name string

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
@description('Registry tier.')
param sku string = 'Basic'

@description('Principal id of the identity the container apps pull images with.')
param acrPullPrincipalId string

@description('AcrPull role definition id.')
param acrPullRoleId string

@description('Principal id of the CI/CD identity that pushes images; empty for none.')
param cicdPrincipalId string = ''

@description('AcrPush role definition id.')
param acrPushRoleId string

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' = {
  // checkov:skip=CKV_AZURE_139: Consumption Container Apps without a VNet and Microsoft-hosted pipeline agents reach the registry over its public endpoint; every pull/push still needs an Entra identity with AcrPull/AcrPush (admin user and anonymous pull are off). Private endpoints need Premium plus a VNet-integrated environment.
  // checkov:skip=CKV_AZURE_163: Image vulnerability scanning is Microsoft Defender for Containers, enabled per subscription, not a registry setting.
  // checkov:skip=CKV_AZURE_166: Quarantine needs Premium and an external scan-and-release workflow; only the pipeline pushes images, built from this repository.
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource acrPullAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, acrPullPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    principalId: acrPullPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
  }
}

resource acrPushAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(cicdPrincipalId)) {
  name: guid(registry.id, cicdPrincipalId, acrPushRoleId)
  scope: registry
  properties: {
    principalId: cicdPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPushRoleId)
  }
}

output id string = registry.id
output name string = registry.name
output loginServer string = registry.properties.loginServer
