// Console: the operations web console (`python -m console`). Internal HTTPS ingress by
// default, Container Apps built-in authentication with Microsoft Entra ID in front of
// every request (the app trusts the X-MS-CLIENT-PRINCIPAL* headers, CONSOLE_AUTH=easyauth),
// probes on /healthz, exactly one replica (its charts sample in memory).

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

@description('Resource id of the console identity (Data Receiver + Data Sender on the queues).')
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

@description('Application Insights component (same resource group) that receives telemetry and that trace links open.')
param applicationInsightsName string

@description('SQLAlchemy URL of the PostgreSQL database (the producer\'s outbox and the consumer\'s audit store share it) as the console identity; empty: no event lookup, no audit chain, replay and purge refused.')
param databaseUrl string = ''

@description('Application (client) id of the Microsoft Entra app registration users sign in to. Empty: authentication stays required but no one can sign in (every request gets 401).')
param authClientId string = ''

@minLength(1)
@description('Directory (tenant) id of that app registration.')
param authTenantId string

@secure()
@description('Client secret of that app registration; empty: sign-in uses the OpenID Connect implicit flow (enable ID tokens on the registration).')
param authClientSecret string = ''

@secure()
@minLength(32)
@description('Signs the console\'s session cookie (CONSOLE_SESSION_SECRET); stored as a Container Apps secret.')
param sessionSecret string

@description('Expose the console outside the Container Apps environment. Default false: reachable only from inside the environment (or its virtual network).')
param externalIngress bool = false

@description('Port uvicorn listens on (CONSOLE_PORT).')
param port int = 8090

@description('deployment.environment.name of the telemetry; anything but development also means JSON logs.')
param deploymentEnvironment string = 'production'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Azure Monitor Logs deep link with the trace's operation id; the console puts the id
// where {trace_id} is (CONSOLE_APPINSIGHTS_TRACE_URL must contain it).
var traceQueryStart = 'union requests, dependencies, traces, exceptions | where operation_Id == "'
var traceUrl = 'https://portal.azure.com/#@${authTenantId}/blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/${uriComponent(applicationInsights.id)}/source/LogsBlade.AnalyticsShareLinkToQuery/query/${uriComponent(traceQueryStart)}{trace_id}${uriComponent('" | order by timestamp asc')}'

var baseEnv = [
  {
    name: 'CONSOLE_ENVIRONMENT'
    value: deploymentEnvironment
  }
  {
    name: 'CONSOLE_PORT'
    value: string(port)
  }
  {
    name: 'CONSOLE_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'CONSOLE_AUDIT_QUEUE'
    value: auditQueueName
  }
  {
    name: 'CONSOLE_NOTIFICATIONS_QUEUE'
    value: notificationsQueueName
  }
  {
    // Sign-in is the platform's (authConfigs below); the app reads its headers.
    name: 'CONSOLE_AUTH'
    value: 'easyauth'
  }
  {
    name: 'CONSOLE_SECURE_COOKIES'
    value: 'true'
  }
  {
    name: 'CONSOLE_SESSION_SECRET'
    secretRef: 'console-session-secret'
  }
  {
    name: 'CONSOLE_APPINSIGHTS_TRACE_URL'
    value: traceUrl
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    secretRef: 'appinsights-connection-string'
  }
  {
    name: 'OTEL_SERVICE_NAME'
    value: 'console'
  }
]
var databaseEnv = empty(databaseUrl) ? [] : [
  {
    name: 'CONSOLE_OUTBOX_DATABASE_URL'
    value: databaseUrl
  }
  {
    name: 'CONSOLE_AUDIT_STORE_URL'
    value: databaseUrl
  }
]

// The name Container Apps authentication reads the Entra client secret from.
var authSecretName = 'microsoft-provider-authentication-secret'
var baseSecrets = [
  {
    name: 'appinsights-connection-string'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'console-session-secret'
    value: sessionSecret
  }
]
var authSecrets = empty(authClientSecret) ? [] : [
  {
    name: authSecretName
    value: authClientSecret
  }
]

resource app 'Microsoft.App/containerApps@2025-07-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'console'
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
        external: externalIngress
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
          // Available to the console's code (DefaultAzureCredential + AZURE_CLIENT_ID).
          identity: identityId
          lifecycle: 'Main'
        }
        {
          // Image pulls only; the code cannot get a token.
          identity: acrPullIdentityId
          lifecycle: 'None'
        }
      ]
      secrets: concat(baseSecrets, authSecrets)
    }
    template: {
      containers: [
        {
          name: 'console'
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
              // The console has no separate readiness endpoint: every page degrades on
              // its own when a source is down.
              type: 'Readiness'
              httpGet: {
                path: '/healthz'
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
        // One replica: the flow charts are sampled in memory, per replica.
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

var signInConfigured = !empty(authClientId)
var entraProvider = {
  azureActiveDirectory: {
    enabled: true
    registration: {
      clientId: authClientId
      clientSecretSettingName: empty(authClientSecret) ? null : authSecretName
      openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
    }
    validation: {
      allowedAudiences: [
        'api://${authClientId}'
        authClientId
      ]
    }
  }
}

// Container Apps built-in authentication ("Easy Auth") with Microsoft Entra ID: every
// request without a sign-in is redirected to Entra (the probes reach the container
// directly, so even /healthz needs a sign-in through the ingress), and the platform strips
// X-MS-CLIENT-PRINCIPAL* headers sent by clients. Azure doc:
// https://learn.microsoft.com/azure/container-apps/authentication-entra
resource auth 'Microsoft.App/containerApps/authConfigs@2025-07-01' = {
  parent: app
  name: 'current'
  properties: {
    platform: {
      enabled: true
    }
    // Fail closed: without an app registration there is no provider and every request
    // is refused, so the app is never reachable without a sign-in.
    globalValidation: signInConfigured ? {
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
    } : {
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: signInConfigured ? entraProvider : {}
  }
}

output id string = app.id
output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
