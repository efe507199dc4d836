//! `deployctl-aws-ecs`: ECS service releases (being built).
