// Consumer: the asyncio worker. No ingress; probes on its health port; scales from zero
// with one KEDA azure-servicebus rule per source (a queue or a topic subscription),
// authenticated with a managed identity.

@description('Region of the app.')
param location string

@description('Tags; the azd-service-name tag is added here.')
param tags object

@description('Container app name.')
param name string

@description('Container Apps environment id.')
param environmentId string

@description('Image to run.')
param image string

@description('Registry login server (<name>.azurecr.io) the image is pulled from.')
param registryLoginServer string

@description('Resource id of the consumer identity (Data Receiver + Data Sender on the queues it reads; Data Receiver on a subscription it reads and Data Sender on that topic).')
param identityId string

@description('Client id of that identity; DefaultAzureCredential reads it from AZURE_CLIENT_ID.')
param identityClientId string

@description('Resource id of the identity the scale rules use (Data Owner on each queue or subscription read, see main.bicep).')
param scalerIdentityId string

@description('Resource id of the identity used only to pull images.')
param acrPullIdentityId string

@description('Service Bus namespace name (the KEDA scaler wants the name, not the host).')
param serviceBusNamespaceName string

@description('Service Bus host name, e.g. sb-xyz.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Audit queue name.')
param auditQueueName string

@description('Notifications queue name.')
param notificationsQueueName string

@description('Topic subscription to read audit events from instead of the audit queue, as CONSUMER_AUDIT_SUBSCRIPTION takes it: <topic>/Subscriptions/<subscription>. Empty: the audit queue.')
param auditSubscription string = ''

@description('As auditSubscription, for notifications (CONSUMER_NOTIFICATIONS_SUBSCRIPTION). Empty: the notifications queue.')
param notificationsSubscription string = ''

@description('Application Insights component (same resource group) that receives telemetry.')
param applicationInsightsName string

@description('SQLAlchemy URL of the PostgreSQL audit store; empty keeps the default SQLite file.')
param databaseUrl string = ''

@minValue(0)
@description('Minimum replicas; 0 scales the worker to zero when both sources are empty.')
param minReplicas int = 0

@minValue(1)
@description('Maximum replicas.')
param maxReplicas int = 10

@minValue(1)
@description('Active messages per replica the scaler aims for.')
param messagesPerReplica int = 20

@description('Port of the health endpoints (CONSUMER_HEALTH_PORT).')
param healthPort int = 8081

@description('deployment.environment.name of the telemetry; anything but development also means JSON logs.')
param deploymentEnvironment string = 'production'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var baseEnv = [
  {
    name: 'CONSUMER_ENVIRONMENT'
    value: deploymentEnvironment
  }
  {
    name: 'CONSUMER_HEALTH_PORT'
    value: string(healthPort)
  }
  {
    name: 'CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    secretRef: 'appinsights-connection-string'
  }
  {
    name: 'OTEL_SERVICE_NAME'
    value: 'consumer'
  }
]
// Each source is a queue or a subscription, never both (the consumer refuses both).
var auditSourceEnv = empty(auditSubscription) ? [
  {
    name: 'CONSUMER_AUDIT_QUEUE'
    value: auditQueueName
  }
] : [
  {
    name: 'CONSUMER_AUDIT_SUBSCRIPTION'
    value: auditSubscription
  }
]
var notificationsSourceEnv = empty(notificationsSubscription) ? [
  {
    name: 'CONSUMER_NOTIFICATIONS_QUEUE'
    value: notificationsQueueName
  }
] : [
  {
    name: 'CONSUMER_NOTIFICATIONS_SUBSCRIPTION'
    value: notificationsSubscription
  }
]
var databaseEnv = empty(databaseUrl) ? [] : [
  {
    name: 'CONSUMER_AUDIT_STORE_URL'
    value: databaseUrl
  }
]

// What each scale rule watches. The KEDA azure-servicebus scaler takes `queueName`, or
// `topicName` with `subscriptionName`, beside `namespace` and `messageCount`
// (https://keda.sh/docs/latest/scalers/azure-service-bus/).
var auditScaleMetadata = empty(auditSubscription) ? {
  queueName: auditQueueName
} : {
  topicName: first(split(auditSubscription, '/'))
  subscriptionName: last(split(auditSubscription, '/'))
}
var notificationsScaleMetadata = empty(notificationsSubscription) ? {
  queueName: notificationsQueueName
} : {
  topicName: first(split(notificationsSubscription, '/'))
  subscriptionName: last(split(notificationsSubscription, '/'))
}

resource app 'Microsoft.App/containerApps@2025-07-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'consumer'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${scalerIdentityId}': {}
      '${acrPullIdentityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      // No ingress: nothing calls the worker; its probes reach the health port directly.
      registries: [
        {
          server: registryLoginServer
          identity: acrPullIdentityId
        }
      ]
      identitySettings: [
        {
          // Available to the worker's code (DefaultAzureCredential + AZURE_CLIENT_ID).
          identity: identityId
          lifecycle: 'Main'
        }
        {
          // Data Owner on the queues or subscriptions read, for KEDA only: the code
          // cannot get a token.
          identity: scalerIdentityId
          lifecycle: 'None'
        }
        {
          // Image pulls only.
          identity: acrPullIdentityId
          lifecycle: 'None'
        }
      ]
      secrets: [
        {
          name: 'appinsights-connection-string'
          value: applicationInsights.properties.ConnectionString
        }
      ]
    }
    template: {
      // Give in-flight messages time to finish and settle on scale-in (SIGTERM first).
      terminationGracePeriodSeconds: 60
      containers: [
        {
          name: 'consumer'
          image: image
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(baseEnv, auditSourceEnv, notificationsSourceEnv, databaseEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: healthPort
              }
              // Up to ~50 s to start (Container Apps caps failureThreshold at 10).
              initialDelaySeconds: 1
              periodSeconds: 5
              failureThreshold: 10
              timeoutSeconds: 2
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: healthPort
              }
              periodSeconds: 10
              failureThreshold: 3
              timeoutSeconds: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: healthPort
              }
              periodSeconds: 5
              failureThreshold: 3
              timeoutSeconds: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        pollingInterval: 15
        cooldownPeriod: 300
        rules: [
          {
            name: 'servicebus-audit'
            custom: {
              type: 'azure-servicebus'
              metadata: union({
                namespace: serviceBusNamespaceName
                messageCount: string(messagesPerReplica)
              }, auditScaleMetadata)
              // Managed identity instead of a connection-string secret (`auth`).
              identity: scalerIdentityId
            }
          }
          {
            name: 'servicebus-notifications'
            custom: {
              type: 'azure-servicebus'
              metadata: union({
                namespace: serviceBusNamespaceName
                messageCount: string(messagesPerReplica)
              }, notificationsScaleMetadata)
              identity: scalerIdentityId
            }
          }
        ]
      }
    }
  }
}

output id string = app.id
output name string = app.name
