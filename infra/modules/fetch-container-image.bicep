// Image a container app runs now, so that re-provisioning (azd provision after azd
// deploy) does not roll it back to the placeholder. The placeholder is only used until
// the first `azd deploy` (or pipeline run) pushes the real image.

@description('Whether the container app already exists.')
param exists bool

@description('Container app name.')
param name string

@description('Image used before the first real image is deployed.')
param placeholderImage string = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'

resource app 'Microsoft.App/containerApps@2025-07-01' existing = if (exists) {
  name: name
}

output image string = exists ? app.properties.template.containers[0].image : placeholderImage
