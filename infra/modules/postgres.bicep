// Optional PostgreSQL Flexible Server for the producer's outbox and the consumer's
// audit store. Password authentication is disabled: only Microsoft Entra principals
// sign in. After deployment the Entra administrator creates a database role for each
// app identity (docs/deploy.md, "PostgreSQL").

@description('Region of the server.')
param location string

@description('Tags for the server.')
param tags object

@description('Server name (globally unique).')
param name string

@description('Database the apps use.')
param databaseName string

@minLength(1)
@description('Object id of the Entra principal that administers the server.')
param adminPrincipalId string

@minLength(1)
@description('Name (UPN, group or app name) of that principal.')
param adminPrincipalName string

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Kind of that principal.')
param adminPrincipalType string = 'User'

@description('Compute size.')
param skuName string = 'Standard_B1ms'

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
@description('Compute tier.')
param skuTier string = 'Burstable'

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: '16'
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    storage: {
      storageSizeGB: 32
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource administrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminPrincipalId
  properties: {
    principalName: adminPrincipalName
    principalType: adminPrincipalType
    tenantId: tenant().tenantId
  }
}

// Flexible Server applies one change at a time; chain the child resources.
resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  dependsOn: [
    administrator
  ]
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Container Apps on a Consumption environment without a virtual network have no fixed
// outbound address, so the server admits connections from Azure services (0.0.0.0);
// every connection still needs an Entra token of a principal that has a database role.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  dependsOn: [
    database
  ]
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

output id string = server.id
output name string = server.name
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
