"""Tests of the InfoGAN package."""
