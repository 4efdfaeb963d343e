// Producer: the FastAPI app. Public HTTPS ingress, probes on /healthz and /readyz, at
// least one replica, scaled out on concurrent HTTP requests.

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

@description('Resource id of the producer identity (Service Bus Data Sender on the queues).')
param identityId string

@description('Client id of that identity; DefaultAzureCredential reads it from AZURE_CLIENT_ID.')
param identityClientId string

@description('Resource id of the identity used only to pull images.')
param acrPullIdentityId string

@description('Service Bus host name, e.g. sb-xyz.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Audit queue name.')
param auditQueueName string

@description('Notifications queue name.')
param notificationsQueueName string

@description('Application Insights component (same resource group) that receives telemetry.')
param applicationInsightsName string

@description('SQLAlchemy URL of the PostgreSQL outbox; empty keeps the default SQLite file.')
param databaseUrl string = ''

@minValue(1)
@description('Minimum replicas (at least one: the API and its outbox relay are always on).')
param minReplicas int = 1

@minValue(1)
@description('Maximum replicas.')
param maxReplicas int = 5

@description('Port uvicorn listens on (PRODUCER_PORT).')
param port int = 8000

@description('deployment.environment.name of the telemetry; anything but development also means JSON logs.')
param deploymentEnvironment string = 'production'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var baseEnv = [
  {
    name: 'PRODUCER_ENVIRONMENT'
    value: deploymentEnvironment
  }
  {
    name: 'PRODUCER_PORT'
    value: string(port)
  }
  {
    name: 'PRODUCER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'PRODUCER_AUDIT_QUEUE'
    value: auditQueueName
  }
  {
    name: 'PRODUCER_NOTIFICATIONS_QUEUE'
    value: notificationsQueueName
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    secretRef: 'appinsights-connection-string'
  }
  {
    name: 'OTEL_SERVICE_NAME'
    value: 'producer'
  }
]
var databaseEnv = empty(databaseUrl) ? [] : [
  {
    name: 'PRODUCER_DATABASE_URL'
    value: databaseUrl
  }
]

resource app 'Microsoft.App/containerApps@2025-07-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'producer'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${acrPullIdentityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: port
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registryLoginServer
          identity: acrPullIdentityId
        }
      ]
      identitySettings: [
        {
          // Available to the app's code (DefaultAzureCredential + AZURE_CLIENT_ID).
          identity: identityId
          lifecycle: 'Main'
        }
        {
          // Used by the platform for image pulls only; the code cannot get a token.
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
      containers: [
        {
          name: 'producer'
          image: image
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(baseEnv, databaseEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: port
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
                port: port
              }
              periodSeconds: 10
              failureThreshold: 3
              timeoutSeconds: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: port
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
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: '50'
              }
            }
          }
        ]
      }
    }
  }
}

output id string = app.id
output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
