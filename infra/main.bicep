// Entry point for `azd up` and for the pipeline's deploy stage.
//
// Deploys, into one resource group: Log Analytics + Application Insights, a Service Bus
// namespace with the `audit` and `notifications` queues (and the topics, subscriptions and
// rules given in serviceBusTopics, none by default), a container registry, the
// user-assigned identities and their entity-scoped role assignments, a Container Apps
// environment and the producer, consumer and console apps. PostgreSQL is optional. The
// console always sits behind Container Apps authentication: until its Entra app
// registration is given (consoleAuthClientId) it refuses every request.
//
// Security properties this template keeps (tests/infra asserts each of them):
// * no shared keys anywhere: Service Bus local (SAS) auth is off, ACR admin user is off,
//   nothing calls listKeys(); workloads authenticate with managed identities;
// * role assignments are scoped to single queues, topics or subscriptions, never to the
//   namespace;
// * nobody gets Azure Service Bus Data Owner except the KEDA scaler identity (see below).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (the azd environment name); used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region for every resource.')
param location string

@description('Resource group to create or update; defaults to rg-<environmentName>.')
param resourceGroupName string = ''

@allowed([
  'Standard'
  'Premium'
])
@description('Service Bus tier. Standard is pay-per-operation; Premium is dedicated capacity (messaging units).')
param serviceBusSku string = 'Standard'

@allowed([
  1
  2
  4
  8
  16
])
@description('Messaging units when serviceBusSku is Premium; ignored for Standard.')
param serviceBusPremiumMessagingUnits int = 1

@description('Container registry name (globally unique, alphanumeric); generated when empty.')
param containerRegistryName string = ''

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
@description('Container registry tier.')
param containerRegistrySku string = 'Basic'

@description('Object id of the CI/CD principal (the pipeline service connection) that pushes images; it gets AcrPush on the registry. Leave empty to manage that grant yourself.')
param cicdPrincipalId string = ''

@description('When false, deploy only the shared infrastructure (monitoring, Service Bus, registry, identities, environment) and no container apps. The pipeline uses this to create the registry before it pushes the first images.')
param deployApps bool = true

@description('Full image reference for the producer (registry/name:tag). Empty: keep the image already running (azd) or use a placeholder until `azd deploy` pushes one.')
param producerImage string = ''

@description('Full image reference for the consumer; same rules as producerImage.')
param consumerImage string = ''

@description('Full image reference for the console; same rules as producerImage.')
param consoleImage string = ''

@description('Set by azd (SERVICE_PRODUCER_RESOURCE_EXISTS): the producer app already exists, so keep its current image on re-provisioning.')
param producerExists bool = false

@description('Set by azd (SERVICE_CONSUMER_RESOURCE_EXISTS): as producerExists, for the consumer.')
param consumerExists bool = false

@description('Set by azd (SERVICE_CONSOLE_RESOURCE_EXISTS): as producerExists, for the console.')
param consoleExists bool = false

@minValue(1)
@description('Producer minimum replicas; at least 1 so the HTTP API never cold-starts and its outbox relay keeps running.')
param producerMinReplicas int = 1

@minValue(1)
@maxValue(300)
@description('Producer maximum replicas.')
param producerMaxReplicas int = 5

@minValue(0)
@description('Consumer minimum replicas; 0 lets KEDA scale the worker to zero on empty queues.')
param consumerMinReplicas int = 0

@minValue(1)
@maxValue(300)
@description('Consumer maximum replicas.')
param consumerMaxReplicas int = 10

@minValue(1)
@description('Active messages per consumer replica that the KEDA azure-servicebus scaler aims for.')
param consumerMessagesPerReplica int = 20

@description('Deploy a PostgreSQL Flexible Server (Microsoft Entra authentication only) for the outbox and the audit store. Without it the apps use their default SQLite files, which live only as long as a replica.')
param deployPostgres bool = false

@description('Object id of the Microsoft Entra principal made PostgreSQL administrator (azd sets AZURE_PRINCIPAL_ID to the signed-in user). Required when deployPostgres is true.')
param postgresAdminPrincipalId string = ''

@description('Display name / UPN of that principal. Required when deployPostgres is true.')
param postgresAdminPrincipalName string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Kind of the PostgreSQL administrator principal.')
param postgresAdminPrincipalType string = 'User'

@description('Deploy the operations console (docs/deploy.md), internal ingress and Entra sign-in in front of every request.')
param deployConsole bool = true

@description('Application (client) id of the Microsoft Entra app registration operators sign in to the console with (app role Console.Operator for replay and purge). Empty: the console is deployed but refuses every request (401) until it is set.')
param consoleAuthClientId string = ''

@description('Directory (tenant) id of that app registration; empty: this deployment\'s tenant.')
param consoleAuthTenantId string = ''

@secure()
@description('Client secret of that app registration; empty: Container Apps authentication signs in with the implicit flow (enable ID tokens on the registration).')
param consoleAuthClientSecret string = ''

@secure()
@description('Signs the console\'s session cookie; by default a new random value per deployment (operators sign in again after a deployment).')
// checkov:skip=CKV_AZURE_131: newGuid() is no hardcoded value: ARM generates a new random GUID for each deployment, and a parameter default is the only place Bicep can generate one.
param consoleSessionSecret string = newGuid()

@description('Expose the console outside the Container Apps environment (still behind Entra sign-in). Default false: internal ingress only.')
param consoleExternalIngress bool = false

@description('Service Bus topics, with their subscriptions, rules and entity-scoped role grants; default none. Shape: modules/servicebus.bicep `topics` (types in modules/servicebus-topic.bicep, servicebus-subscription.bicep and servicebus-rule.bicep); example in docs/deploy.md. A topic\'s senders get Azure Service Bus Data Sender on the topic, a subscription\'s receivers Data Receiver on the subscription; each is \'producer\', \'consumer\' or the object id of another service principal.')
param serviceBusTopics array = []

@description('Topic subscription the consumer reads audit events from instead of the audit queue, as CONSUMER_AUDIT_SUBSCRIPTION takes it: <topic>/Subscriptions/<subscription>; empty (default): the audit queue. The subscription must exist (declare it in serviceBusTopics). The consumer then gets Data Receiver on the subscription and Data Sender on its topic (dead-letter replay), the KEDA scaler Data Owner on the subscription, and neither keeps a role on the audit queue.')
param consumerAuditSubscription string = ''

@description('As consumerAuditSubscription, for notification events (CONSUMER_NOTIFICATIONS_SUBSCRIPTION) instead of the notifications queue.')
param consumerNotificationsSubscription string = ''

@description('Tags added to every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------
// Queue settings. Single source of truth: config/servicebus.json (the emulator's
// Config.json). tests/infra/test_queue_settings.py fails if these values drift from it.
// Note: requiresSession and requiresDuplicateDetection cannot be changed on an existing
// queue; changing them means a new queue.
// ---------------------------------------------------------------------------------------
var auditQueueName = 'audit'
var notificationsQueueName = 'notifications'
var queues = [
  {
    name: auditQueueName
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
  }
  {
    name: notificationsQueueName
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    defaultMessageTimeToLive: 'P1D'
    requiresSession: false
  }
]
var queueNames = [
  auditQueueName
  notificationsQueueName
]
// The queues the consumer reads: those not replaced by a topic subscription.
var consumerQueueNames = concat(empty(consumerAuditSubscription) ? [
  auditQueueName
] : [], empty(consumerNotificationsSubscription) ? [
  notificationsQueueName
] : [])
// The topic subscriptions the consumer reads, as <topic>/Subscriptions/<subscription>.
var consumerSubscriptionPaths = filter([
  consumerAuditSubscription
  consumerNotificationsSubscription
], path => !empty(path))

// Built-in role definition ids (the same in every tenant); tests/infra checks each id
// against the role name in its key.
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419' // Azure Service Bus Data Owner
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec' // AcrPush
}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
})
var names = {
  resourceGroup: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  logAnalytics: 'log-${resourceToken}'
  applicationInsights: 'appi-${resourceToken}'
  serviceBus: 'sb-${resourceToken}'
  registry: empty(containerRegistryName) ? 'cr${resourceToken}' : containerRegistryName
  environment: 'cae-${resourceToken}'
  producerApp: 'ca-producer-${resourceToken}'
  consumerApp: 'ca-consumer-${resourceToken}'
  consoleApp: 'ca-console-${resourceToken}'
  producerIdentity: 'id-producer-${resourceToken}'
  consumerIdentity: 'id-consumer-${resourceToken}'
  consoleIdentity: 'id-console-${resourceToken}'
  scalerIdentity: 'id-scaler-${resourceToken}'
  acrPullIdentity: 'id-acrpull-${resourceToken}'
  postgres: 'psql-${resourceToken}'
}
var postgresDatabaseName = 'servicebus_events'
var consoleDeployed = deployApps && deployConsole

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: allTags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: allTags
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: allTags
    name: names.serviceBus
    sku: serviceBusSku
    premiumMessagingUnits: serviceBusPremiumMessagingUnits
    queues: queues
    topics: serviceBusTopics
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: allTags
    producerName: names.producerIdentity
    consumerName: names.consumerIdentity
    consoleName: names.consoleIdentity
    scalerName: names.scalerIdentity
    acrPullName: names.acrPullIdentity
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: allTags
    name: names.registry
    sku: containerRegistrySku
    acrPullPrincipalId: identities.outputs.acrPullPrincipalId
    acrPullRoleId: roles.acrPull
    cicdPrincipalId: cicdPrincipalId
    acrPushRoleId: roles.acrPush
  }
}

// Producer: publishes audit and notification events -> Data Sender on each queue.
module producerQueueRoles 'modules/servicebus-queue-roles.bicep' = [for queueName in queueNames: {
  name: 'rbac-producer-${queueName}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    queueName: queueName
    principalId: identities.outputs.producerPrincipalId
    roleDefinitionIds: [
      roles.serviceBusDataSender
    ]
  }
}]

// Consumer: receives and settles (Data Receiver); its retry ladder re-sends a scheduled
// copy of a failed message to the same queue (Data Sender). Only on the queues it reads.
module consumerQueueRoles 'modules/servicebus-queue-roles.bicep' = [for queueName in consumerQueueNames: {
  name: 'rbac-consumer-${queueName}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    queueName: queueName
    principalId: identities.outputs.consumerPrincipalId
    roleDefinitionIds: [
      roles.serviceBusDataReceiver
      roles.serviceBusDataSender
    ]
  }
}]

// Console: peeks the queues and their dead-letter queues and receives dead letters to
// replay or purge them (Data Receiver); replay re-sends them to the queue (Data Sender).
module consoleQueueRoles 'modules/servicebus-queue-roles.bicep' = [for queueName in queueNames: {
  name: 'rbac-console-${queueName}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    queueName: queueName
    principalId: identities.outputs.consolePrincipalId
    roleDefinitionIds: [
      roles.serviceBusDataReceiver
      roles.serviceBusDataSender
    ]
  }
}]

// KEDA scaler: the azure-servicebus scaler reads the queue's active message count with
// the Service Bus administration client (GetQueueRuntimeProperties, an entity-management
// call on the namespace endpoint). That call needs the Manage claim, and the only
// built-in role carrying Manage is Azure Service Bus Data Owner; Data Receiver is not
// enough. So the scaler gets its own identity with Data Owner on each queue it watches
// (never on the namespace), and that identity is attached to the consumer app with
// lifecycle 'None': the platform uses it for the scale rules, the consumer's code cannot
// get a token for it.
module scalerQueueRoles 'modules/servicebus-queue-roles.bicep' = [for queueName in consumerQueueNames: {
  name: 'rbac-scaler-${queueName}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    queueName: queueName
    principalId: identities.outputs.scalerPrincipalId
    roleDefinitionIds: [
      roles.serviceBusDataOwner
    ]
  }
}]

// Consumer sources that are topic subscriptions (consumerAuditSubscription,
// consumerNotificationsSubscription): Data Receiver on the subscription and Data Sender on
// its topic for the consumer (replay goes through the topic), Data Owner on the
// subscription for the KEDA scaler (reading its message count needs Manage, as above).
module consumerSubscriptionRoles 'modules/servicebus-subscription-source-roles.bicep' = [for path in consumerSubscriptionPaths: {
  name: 'rbac-source-${uniqueString(path)}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    subscriptionPath: path
    consumerPrincipalId: identities.outputs.consumerPrincipalId
    scalerPrincipalId: identities.outputs.scalerPrincipalId
    dataReceiverRoleId: roles.serviceBusDataReceiver
    dataSenderRoleId: roles.serviceBusDataSender
    dataOwnerRoleId: roles.serviceBusDataOwner
  }
}]

// Topics (serviceBusTopics): Data Sender on a topic for its senders and Data Receiver on a
// subscription for its receivers, each scoped to that one entity. Senders and receivers
// name this template's identities (the keys below) or give another principal's object id.
var topicIdentityPrincipalIds = {
  producer: identities.outputs.producerPrincipalId
  consumer: identities.outputs.consumerPrincipalId
}

module topicRoles 'modules/servicebus-topic-roles.bicep' = [for topic in serviceBusTopics: {
  name: 'rbac-topic-${uniqueString(topic.name)}'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.name
    topic: topic
    identityPrincipalIds: topicIdentityPrincipalIds
    dataSenderRoleId: roles.serviceBusDataSender
    dataReceiverRoleId: roles.serviceBusDataReceiver
  }
}]

module environment 'modules/container-apps-environment.bicep' = {
  name: 'container-apps-environment'
  scope: rg
  params: {
    location: location
    tags: allTags
    name: names.environment
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module postgres 'modules/postgres.bicep' = if (deployPostgres) {
  name: 'postgres'
  scope: rg
  params: {
    location: location
    tags: allTags
    name: names.postgres
    databaseName: postgresDatabaseName
    adminPrincipalId: postgresAdminPrincipalId
    adminPrincipalName: postgresAdminPrincipalName
    adminPrincipalType: postgresAdminPrincipalType
  }
}

// azd re-provisioning: keep the image `azd deploy` put there instead of the placeholder.
module producerCurrentImage 'modules/fetch-container-image.bicep' = {
  name: 'producer-current-image'
  scope: rg
  params: {
    exists: producerExists
    name: names.producerApp
  }
}

module consumerCurrentImage 'modules/fetch-container-image.bicep' = {
  name: 'consumer-current-image'
  scope: rg
  params: {
    exists: consumerExists
    name: names.consumerApp
  }
}

module consoleCurrentImage 'modules/fetch-container-image.bicep' = {
  name: 'console-current-image'
  scope: rg
  params: {
    exists: consoleExists
    name: names.consoleApp
  }
}

module producer 'modules/producer-app.bicep' = if (deployApps) {
  name: 'producer-app'
  scope: rg
  dependsOn: [
    producerQueueRoles
    topicRoles
    registry
  ]
  params: {
    location: location
    tags: allTags
    name: names.producerApp
    environmentId: environment.outputs.id
    image: !empty(producerImage) ? producerImage : producerCurrentImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    identityId: identities.outputs.producerId
    identityClientId: identities.outputs.producerClientId
    acrPullIdentityId: identities.outputs.acrPullId
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    auditQueueName: auditQueueName
    notificationsQueueName: notificationsQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deploymentEnvironment: environmentName
    databaseUrl: deployPostgres ? 'postgresql+asyncpg://${names.producerIdentity}@${postgres.outputs.fullyQualifiedDomainName}:5432/${postgresDatabaseName}?ssl=require' : ''
    minReplicas: producerMinReplicas
    maxReplicas: producerMaxReplicas
  }
}

module consumer 'modules/consumer-app.bicep' = if (deployApps) {
  name: 'consumer-app'
  scope: rg
  dependsOn: [
    consumerQueueRoles
    scalerQueueRoles
    consumerSubscriptionRoles
    topicRoles
    registry
  ]
  params: {
    location: location
    tags: allTags
    name: names.consumerApp
    environmentId: environment.outputs.id
    image: !empty(consumerImage) ? consumerImage : consumerCurrentImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    identityId: identities.outputs.consumerId
    identityClientId: identities.outputs.consumerClientId
    scalerIdentityId: identities.outputs.scalerId
    acrPullIdentityId: identities.outputs.acrPullId
    serviceBusNamespaceName: serviceBus.outputs.name
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    auditQueueName: auditQueueName
    notificationsQueueName: notificationsQueueName
    auditSubscription: consumerAuditSubscription
    notificationsSubscription: consumerNotificationsSubscription
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deploymentEnvironment: environmentName
    databaseUrl: deployPostgres ? 'postgresql+asyncpg://${names.consumerIdentity}@${postgres.outputs.fullyQualifiedDomainName}:5432/${postgresDatabaseName}?ssl=require' : ''
    minReplicas: consumerMinReplicas
    maxReplicas: consumerMaxReplicas
    messagesPerReplica: consumerMessagesPerReplica
  }
}

module console 'modules/console-app.bicep' = if (consoleDeployed) {
  name: 'console-app'
  scope: rg
  dependsOn: [
    consoleQueueRoles
    registry
  ]
  params: {
    location: location
    tags: allTags
    name: names.consoleApp
    environmentId: environment.outputs.id
    image: !empty(consoleImage) ? consoleImage : consoleCurrentImage.outputs.image
    registryLoginServer: registry.outputs.loginServer
    identityId: identities.outputs.consoleId
    identityClientId: identities.outputs.consoleClientId
    acrPullIdentityId: identities.outputs.acrPullId
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    auditQueueName: auditQueueName
    notificationsQueueName: notificationsQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deploymentEnvironment: 'production'
    databaseUrl: deployPostgres ? 'postgresql+asyncpg://${names.consoleIdentity}@${postgres.outputs.fullyQualifiedDomainName}:5432/${postgresDatabaseName}?ssl=require' : ''
    authClientId: consoleAuthClientId
    authTenantId: empty(consoleAuthTenantId) ? tenant().tenantId : consoleAuthTenantId
    authClientSecret: consoleAuthClientSecret
    sessionSecret: consoleSessionSecret
    externalIngress: consoleExternalIngress
  }
}

// Outputs azd stores in .azure/<env>/.env (and the pipeline reads back).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_ENVIRONMENT_NAME string = environment.outputs.name
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output PRODUCER_FQDN string = deployApps ? producer.outputs.fqdn : ''
output PRODUCER_URL string = deployApps ? 'https://${producer.outputs.fqdn}' : ''
// camelCase copy for scripts: ARM rewrites the case of UPPER_CASE output names.
output producerFqdn string = deployApps ? producer.outputs.fqdn : ''
output CONSOLE_URL string = consoleDeployed ? 'https://${console.outputs.fqdn}' : ''
output POSTGRES_FQDN string = deployPostgres ? postgres.outputs.fullyQualifiedDomainName : ''
