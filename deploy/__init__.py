"""Deployment tools: export the Flow to Kubernetes or docker-compose and complete what the export leaves out."""
