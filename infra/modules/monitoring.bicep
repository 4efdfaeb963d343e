// Log Analytics workspace and a workspace-based Application Insights component.
// The Container Apps environment sends its logs to the workspace (diagnostic settings);
// the apps send OpenTelemetry traces, metrics and logs to Application Insights.

@description('Region of both resources.')
param location string

@description('Tags for both resources.')
param tags object

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@minValue(30)
@maxValue(730)
@description('Days the workspace keeps logs.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // No workspace shared keys: data arrives through diagnostic settings and
      // Application Insights, both authenticated by the platform.
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // The Azure Monitor OpenTelemetry exporter in the apps authenticates with the
    // connection string (an ingestion endpoint + instrumentation key, not a credential
    // that can read data). Switching this to true also requires the apps to send an
    // Entra token (Monitoring Metrics Publisher role).
    DisableLocalAuth: false
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output applicationInsightsName string = applicationInsights.name
