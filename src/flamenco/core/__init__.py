"""Pure domain logic shared by Server, Manager and Worker: frames, states, job compilation."""
