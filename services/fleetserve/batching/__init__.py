"""Micro-batching: a payload-agnostic batcher with a swappable policy; v2 merge / split apart."""
